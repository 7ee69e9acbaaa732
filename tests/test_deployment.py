"""Sparse deployment: the replica equals the sum of shipped updates; rho = 1 equals the trained model."""

import numpy as np
import pytest
import torch

from curation.deployment import Replica, SparseUpdate, Sparsifier, dense_bytes
from curation.errors import CurationError


def _train_steps(model, steps, seed=0):
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(steps):
        x, y = torch.randn(32, 20), torch.randint(0, 3, (32,))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        yield


def _model():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.BatchNorm1d(64), torch.nn.ReLU(), torch.nn.Linear(64, 3))


@pytest.mark.parametrize("rho", [1e-2, 1e-3, 1e-4])
def test_replica_is_the_sum_of_shipped_updates(rho):
    model = _model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    sender = Sparsifier(rho, "m1").start(model.state_dict())
    replica = Replica(model.state_dict(), "m1")
    summed = {k: v.clone() for k, v in start.items()}
    total_bytes = 0
    for step, _ in enumerate(_train_steps(model, 12)):
        update = SparseUpdate.from_bytes(sender.update(model.state_dict(), f"m1.{step}").to_bytes())
        replica.apply(update)
        total_bytes += update.nbytes
        for name, (idx, values) in update.sparse.items():
            summed[name].view(-1).index_add_(0, torch.from_numpy(idx.astype(np.int64)), torch.from_numpy(values))
        for name, (idx, values) in update.exact.items():
            summed[name].view(-1)[torch.from_numpy(idx.astype(np.int64))] = torch.from_numpy(values)
        for name, value in update.dense.items():
            summed[name].copy_(torch.from_numpy(value))
        for name in summed:
            assert torch.equal(replica.state[name], summed[name]), name
            assert torch.equal(replica.state[name], sender.mirror[name]), name
    assert total_bytes < 12 * dense_bytes(model.state_dict()) * max(rho * 4, 0.05)
    assert sender.gap(model.state_dict()) > 0  # something is still waiting in the residual


def test_rho_one_deploys_the_trained_model_exactly():
    model = _model()
    sender = Sparsifier(1.0, "m").start(model.state_dict())
    replica = Replica(model.state_dict(), "m")
    for step, _ in enumerate(_train_steps(model, 5)):
        replica.apply(sender.update(model.state_dict(), str(step)))
        for name, value in model.state_dict().items():
            assert torch.equal(replica.state[name], value), name
    assert sender.gap(model.state_dict()) == 0


def test_error_feedback_ships_everything_eventually():
    """With no new training the residual drains: repeated updates close the gap to zero."""
    model = _model()
    sender = Sparsifier(0.05, "m").start(model.state_dict())
    replica = Replica(model.state_dict(), "m")
    list(_train_steps(model, 3))
    for step in range(40):
        replica.apply(sender.update(model.state_dict(), "final"))
    for name, value in model.state_dict().items():
        assert torch.equal(replica.state[name], value), name


def test_bad_updates_are_rejected():
    model = _model()
    sender = Sparsifier(0.1, "m1").start(model.state_dict())
    other = Replica(model.state_dict(), "m2")
    list(_train_steps(model, 1))
    update = sender.update(model.state_dict(), "x")
    with pytest.raises(CurationError, match="for deployment 'm1'"):
        other.apply(update)
    replica = Replica(model.state_dict(), "m1")
    update.sequence = 3
    with pytest.raises(CurationError, match="arrived after update 0"):
        replica.apply(update)
    with pytest.raises(CurationError, match="unreadable"):
        SparseUpdate.from_bytes(b"not an npz")
    with pytest.raises(CurationError, match="outside"):
        Sparsifier(0, "m")
