"""InfoBatch against docs/papers.md section 5: kept fraction, unbiased rescaling, annealing, resume bit for bit."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from crash import CrashAt

from curation.config import load_settings
from curation.data import sources
from curation.data.versions import add_version, open_version
from curation.errors import CurationError
from curation.selection.base import make_selector
from curation.selection.infobatch import InfoBatch
from curation.selection.plans import FullPlan
from curation.training import Callback, OnlineSelector, TrainConfig, Trainer, TrainingData
from models import ModelSpec, build


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> TrainingData:
    settings = load_settings(home=tmp_path_factory.mktemp("infobatch"), dvc=False)
    info = add_version(settings, sources.mnist1d(samples=600))
    _, reader = open_version(settings, info.id)
    return TrainingData.load(reader, info.id, info.feature_shape, torch.device("cpu"))


def trainer(data, selector, checkpoint=None, callbacks=(), **options) -> Trainer:
    config = TrainConfig(arch="mlp", **{"epochs": 8, "batch_size": 32, **options})
    torch.manual_seed(0)
    return Trainer(
        build("mlp", ModelSpec(40, data.feature_shape, 10)),
        data,
        config,
        selector=selector,
        checkpoint=checkpoint,
        callbacks=callbacks,
    )


def full(data) -> FullPlan:
    return FullPlan(data.version_id, data.train.sample_ids)


def test_registered_online_and_checked():
    selector = make_selector("infobatch", prune=0.3, anneal=0.2)
    assert selector.online and isinstance(selector, OnlineSelector)
    assert selector.get_params() == {"prune": 0.3, "anneal": 0.2, "batch_size": None, "seed": 0}
    with pytest.raises(CurationError, match="0 <= prune < 1"):
        InfoBatch(prune=1.0).start(10)
    with pytest.raises(CurationError, match="unknown parameters"):
        make_selector("infobatch", ratio=0.5)


@pytest.mark.parametrize("prune", [0.3, 0.5, 0.8])
def test_kept_fraction_is_high_plus_one_minus_r_of_low(prune):
    n = 20_000
    scores = np.random.default_rng(1).exponential(size=n).astype(np.float32)
    scores[:1000] = np.nan  # never trained on: count as high
    for epoch in range(3):
        ib = InfoBatch(prune=prune, seed=7).start(n)
        ib.scores_ = scores.copy()
        ib.start_epoch(epoch, progress=0.1)
        rows, weights = ib.epoch_rows()
        scored = scores[1000:]
        low = int((scored < scored.mean(dtype=np.float64)).sum())
        high = n - low
        expected, sd = high + (1 - prune) * low, np.sqrt(low * prune * (1 - prune))
        assert abs(len(rows) - expected) < 4 * sd
        assert set(range(1000)) <= set(rows.tolist())  # unscored rows always kept, weight 1
        is_low = np.zeros(n, bool)
        is_low[1000:] = scored < scored.mean(dtype=np.float64)
        assert np.allclose(weights, np.where(is_low[rows], 1 / (1 - prune), 1.0))
        again = InfoBatch(prune=prune, seed=7).start(n)
        again.scores_ = scores.copy()
        again.start_epoch(epoch, progress=0.1)
        assert np.array_equal(again.epoch_rows()[0], rows)  # (seed, epoch) fixes the draw


def test_expected_gradient_of_a_pruned_epoch_equals_the_full_epochs():
    """A linear softmax model with fixed weights: the gradient of sum_i w_i loss_i over the kept rows,
    averaged over many seeded draws, is the full epoch's gradient; unweighted it is not."""
    torch.manual_seed(0)
    n, d, c = 300, 8, 4
    x, y = torch.randn(n, d), torch.randint(0, c, (n,))
    model = torch.nn.Linear(d, c)
    losses = F.cross_entropy(model(x), y, reduction="none")
    per_sample = (
        torch.stack(
            [
                torch.cat([g.flatten() for g in torch.autograd.grad(losses[i], model.parameters(), retain_graph=True)])
                for i in range(n)
            ]
        )
        .numpy()
        .astype(np.float64)
    )
    full_grad = per_sample.sum(0)
    draws, unweighted = [], []
    for seed in range(600):
        ib = InfoBatch(prune=0.5, seed=seed).start(n)
        ib.observe(np.arange(n), losses.detach().numpy())
        ib.start_epoch(1, progress=0.5)
        rows, weights = ib.epoch_rows()
        draws.append(weights @ per_sample[rows])
        unweighted.append(per_sample[rows].sum(0))
    draws, unweighted = np.array(draws), np.array(unweighted)
    stderr = draws.std(0) / np.sqrt(len(draws)) + 1e-12
    assert (np.abs(draws.mean(0) - full_grad) < 5 * stderr).all()
    assert np.linalg.norm(draws.mean(0) - full_grad) < 0.05 * np.linalg.norm(full_grad)
    biased = np.abs(unweighted.mean(0) - full_grad) / (unweighted.std(0) / np.sqrt(len(draws)) + 1e-12)
    assert biased.max() > 10  # dropping without rescaling is measurably biased: the test can fail


class Epochs(Callback):
    """Per epoch: the backward samples and whether every loss weight was 1."""

    def __init__(self):
        self.trained, self.unweighted = [], []

    def on_epoch_end(self, record):
        self.trained.append(record["trained_samples"])
        self.unweighted.append(bool((self.trainer.selector.weight_ == 1).all()))


def test_in_the_trainer_no_extra_forward_annealing_uses_every_sample(data):
    n = len(data.train)
    seen = Epochs()
    ib = InfoBatch(prune=0.5, anneal=0.25, seed=3)
    result = trainer(data, ib, callbacks=[seen]).fit(full(data))
    ledger = result.ledger
    assert ledger.selection_forward_samples == 0  # the scores are the training forward's losses
    assert ledger.forward_samples == ledger.backward_samples == sum(seen.trained)
    assert seen.trained[0] == n  # nothing scored yet: everything counts as high
    assert all(k < n for k in seen.trained[1:6]) and sum(seen.trained[1:6]) < 0.9 * 5 * n
    assert seen.trained[6:] == [n, n] and seen.unweighted[6:] == [True, True]  # the last quarter: annealing
    assert not any(seen.unweighted[1:6])  # pruned epochs rescale the kept low-score samples
    assert not np.isnan(ib.scores_).any()  # every row was trained on, so scored
    assert sum(result.occupancy) == n and sum(k * c for k, c in enumerate(result.occupancy)) == ledger.backward_samples


def test_resume_from_a_checkpoint_is_bit_for_bit(data, tmp_path):
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    reference = trainer(data, InfoBatch(seed=5), epochs=4).fit(full(data))
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer(data, InfoBatch(seed=5), checkpoint, [CrashAt(2, 3)], epochs=4).fit(full(data))
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["epoch"] == 2 and saved["selector_state"]["scores"].shape == (len(data.train),)
    resumed = trainer(data, InfoBatch(seed=5), checkpoint, epochs=4).fit(full(data), resume=True)
    ref, got = reference.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert resumed.ledger.backward_samples == reference.ledger.backward_samples
    assert [r["trained_samples"] for r in resumed.history] == [r["trained_samples"] for r in reference.history]
