"""Sparse updates: the replica equals the sum of shipped updates; rho = 1 equals the trained model."""

import numpy as np
import pytest
import torch

from curation.errors import CurationError
from curation.sparse_updates import Replica, SparseUpdate, Sparsifier, dense_bytes


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
    return torch.nn.Sequential(
        torch.nn.Linear(20, 64), torch.nn.BatchNorm1d(64), torch.nn.ReLU(), torch.nn.Linear(64, 3)
    )


@pytest.mark.parametrize("scope", ["tensor", "model"])
@pytest.mark.parametrize("rho", [1e-2, 1e-3, 1e-4])
def test_replica_is_the_sum_of_shipped_updates(rho, scope):
    model = _model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    sender = Sparsifier(rho, "m1", scope=scope).start(model.state_dict())
    replica = Replica(model.state_dict(), "m1")
    summed = {k: v.clone() for k, v in start.items()}
    total_bytes = 0
    for step, _ in enumerate(_train_steps(model, 12)):
        update = SparseUpdate.from_bytes(sender.update(model.state_dict(), f"m1.{step}").to_bytes())
        replica.apply(update)
        total_bytes += update.nbytes
        for name, (idx, values) in update.sparse.items():
            summed[name].view(-1).index_add_(
                0, torch.from_numpy(idx.astype(np.int64)), torch.from_numpy(values).float()
            )
        for name, (idx, values) in update.exact.items():
            summed[name].view(-1)[torch.from_numpy(idx.astype(np.int64))] = torch.from_numpy(values)
        for name, value in update.dense.items():
            summed[name].copy_(torch.from_numpy(value))
        for name in summed:
            assert torch.equal(replica.state[name], summed[name]), name
            assert torch.equal(replica.state[name], sender.mirror[name]), name
        assert all(v.dtype == np.float16 for _, v in update.sparse.values())  # sparse: float16 adds
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
    for _ in range(40):
        replica.apply(sender.update(model.state_dict(), "final"))
    for name, value in model.state_dict().items():
        assert torch.equal(replica.state[name], value), name


def test_bad_updates_are_rejected():
    model = _model()
    sender = Sparsifier(0.1, "m1").start(model.state_dict())
    other = Replica(model.state_dict(), "m2")
    list(_train_steps(model, 1))
    update = sender.update(model.state_dict(), "x")
    with pytest.raises(CurationError, match="for base 'm1'"):
        other.apply(update)
    replica = Replica(model.state_dict(), "m1")
    update.sequence = 3
    with pytest.raises(CurationError, match="arrived after update 0"):
        replica.apply(update)
    with pytest.raises(CurationError, match="unreadable"):
        SparseUpdate.from_bytes(b"not an update")
    with pytest.raises(CurationError, match="outside"):
        Sparsifier(0, "m")
    with pytest.raises(CurationError, match="scope"):
        Sparsifier(0.1, "m", scope="layer")
    with pytest.raises(CurationError, match="format"):
        SparseUpdate.from_bytes(b"CSU1" + update.to_bytes()[4:])


def test_wire_format_round_trip_and_size():
    """Sorted indices as varint gaps + float16 values: about 4 bytes an entry at rho = 1e-3, header included."""
    torch.manual_seed(0)
    state = {"w": torch.randn(300_000), "b": torch.randn(7), "n": torch.tensor(3)}
    sender = Sparsifier(1e-3, "m").start(state)
    trained = {"w": state["w"] + torch.randn(300_000), "b": state["b"] + 1, "n": torch.tensor(4)}
    update = sender.update(trained, "m2")
    payload = update.to_bytes()
    back = SparseUpdate.from_bytes(payload)
    assert (back.model_version, back.base_version, back.sequence, back.rho) == ("m2", "m", 1, 1e-3)
    for name in update.sparse:
        assert np.array_equal(back.sparse[name][0], update.sparse[name][0])
        assert np.array_equal(back.sparse[name][1], update.sparse[name][1])
    assert back.dense["n"].shape == () and int(back.dense["n"]) == 4
    entries = sum(len(i) for i, _ in [*update.sparse.values(), *update.exact.values()])
    assert entries == 300 + 1
    assert len(payload) < 4.3 * entries + 150  # vs 8 bytes an entry as int32 + float32
    assert len(payload) / dense_bytes(trained) < 1 / 500


def test_float16_rounding_stays_in_the_residual():
    """The replica adds the float16 value; what rounding lost is shipped by the next updates."""
    state = {"w": torch.zeros(4)}
    sender = Sparsifier(0.5, "m").start(state)
    replica = Replica(state, "m")
    trained = {"w": torch.tensor([0.1, 1e-6, 3.0e-3, 1e5])}  # 1e-6 and 1e5 cannot go as float16 adds
    for _ in range(6):
        replica.apply(SparseUpdate.from_bytes(sender.update(trained, "m2").to_bytes()))
    assert torch.equal(replica.state["w"], trained["w"])
    assert sender.gap(trained) == 0


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-1],
        lambda b: b + b"x",
        lambda b: b"CSU2" + b"\xff" * 8,
        lambda b: b.replace(b'"<f2"', b'"|O1"'),
        lambda b: b[:20],
    ],
)
def test_damaged_updates_are_one_line_errors(damage):
    model = _model()
    sender = Sparsifier(1e-2, "m").start(model.state_dict())
    list(_train_steps(model, 1))
    payload = sender.update(model.state_dict(), "x").to_bytes()
    with pytest.raises(CurationError, match="unreadable"):
        SparseUpdate.from_bytes(damage(payload))


def test_sender_follows_a_replica():
    model = _model()
    sender = Sparsifier(1e-2, "m").start(model.state_dict())
    replica = Replica(model.state_dict(), "m")
    list(_train_steps(model, 2))
    replica.apply(sender.update(model.state_dict(), "a"))
    follower = Sparsifier.following(replica, 1e-2)
    assert follower.sequence == 1 and follower.base_version == "m"
    replica.apply(follower.update(model.state_dict(), "b"))
    assert replica.sequence == 2


def test_model_scope_spends_the_budget_where_the_gaps_are():
    state = {"a": torch.zeros(1000), "b": torch.zeros(1000)}
    trained = {"a": torch.full((1000,), 1e-3), "b": torch.linspace(1, 2, 1000)}
    update = Sparsifier(1e-2, "m", scope="model").start(state).update(trained, "x")
    assert "a" not in update.sparse and len(update.sparse["b"][0]) == 20  # ceil(1e-2 * 2000) = 20, all in b
    assert update.sparse["b"][0].tolist() == list(range(980, 1000))
    per_tensor = Sparsifier(1e-2, "m").start(state).update(trained, "x")
    assert len(per_tensor.sparse["a"][0]) == len(per_tensor.sparse["b"][0]) == 10


@pytest.mark.parametrize("rho", [1e-2, 1e-3])
def test_sparse_training_trains_on_the_replica_and_loses_nothing(rho):
    """Carry mode: after each step the model is what the replica holds; shipped + residual = every step's update."""
    from types import SimpleNamespace

    from curation.sparse_updates import SparseTraining

    model = _model()
    replica = Replica(model.state_dict(), "m")
    sender = Sparsifier(rho, "m", carry=True).start(model.state_dict())
    callback = SparseTraining(sender, lambda update: replica.apply(SparseUpdate.from_bytes(update.to_bytes())), "m.1")
    callback.trainer = SimpleNamespace(model=model)
    intended = {k: v.clone().float() for k, v in model.state_dict().items() if v.is_floating_point()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for step, _ in enumerate(_train_steps(model, 8)):
        for name in intended:
            intended[name] += model.state_dict()[name].float() - before[name].float()
        callback.on_batch_end(0, step)
        for name, value in model.state_dict().items():
            assert torch.equal(value, replica.state[name]) and torch.equal(value, sender.mirror[name]), name
        for name, value in intended.items():
            carried = sender.mirror[name].float().view(-1) + sender.residual[name]
            assert torch.allclose(carried, value.view(-1), atol=1e-5), name
        before = {k: v.clone() for k, v in model.state_dict().items()}
    assert sender.gap(model.state_dict()) > 0  # the residual waits for the next updates
    for _ in range(round(2 / rho)):  # no more training: the residual drains into the replica (k per tensor each)
        callback.flush()
    assert sender.gap(model.state_dict()) < 1e-6
    with pytest.raises(ValueError, match="carry"):
        SparseTraining(Sparsifier(rho, "m"), replica.apply, "m.1")
