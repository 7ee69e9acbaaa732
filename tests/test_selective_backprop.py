"""Selective-Backprop's selection rule against docs/papers.md section 2."""

import numpy as np
import pytest

from curation.errors import CurationError
from curation.selection.selective_backprop import SelectiveBackprop


@pytest.mark.parametrize("beta", [1, 2, 3])
def test_selected_fraction_is_one_over_beta_plus_one(beta):
    rng = np.random.default_rng(beta)
    sb = SelectiveBackprop(beta=beta, seed=beta).start(100_000)
    selected = total = 0
    for _ in range(400):
        rows = rng.integers(0, 100_000, 128)
        mask = sb.decide(rows, rng.exponential(size=128), epoch=1)
        selected += mask.sum()
        total += len(mask)
    assert selected / total == pytest.approx(1 / (beta + 1), abs=0.02)


def test_percentile_is_strictly_lower_over_history_including_current_batch():
    sb = SelectiveBackprop(beta=1, history=4).start(10)
    p = sb.probabilities(np.array([1.0, 2.0]))
    assert p.tolist() == [0.0, 0.5]  # H = {1, 2}: one loss below 2 of two
    p = sb.probabilities(np.array([3.0, 0.5, 2.5]))  # H keeps the last 4: {2, 3, 0.5, 2.5}
    assert p.tolist() == [0.75, 0.0, 0.5]


def test_warmup_selects_everything_and_p_min_floors():
    sb = SelectiveBackprop(beta=3, p_min=1.0).start(50)
    assert sb.decide(np.arange(10), np.zeros(10), epoch=0).all()
    assert sb.decide(np.arange(10), np.linspace(0, 1, 10), epoch=1).all()  # p_min = 1: everything


def test_stale_variant_skips_young_cached_losses():
    sb = SelectiveBackprop(staleness=2).start(20)
    rows = np.arange(10)
    sb.decide(rows, np.ones(10), epoch=0)
    assert not sb.needs_forward(rows, epoch=1).any()  # cached at epoch 0, younger than 2 epochs
    assert sb.needs_forward(rows, epoch=2).all()
    assert sb.needs_forward(np.arange(10, 20), epoch=1).all()  # never seen
    fresh = np.zeros(10, bool)
    sb.decide(rows, sb.cached(rows), epoch=1, fresh=fresh)
    assert (sb.cached_epoch_[rows] == 0).all()  # cached losses were not re-stamped


def test_bad_parameters():
    with pytest.raises(CurationError, match="beta >= 0"):
        SelectiveBackprop(beta=-1).start(3)


def test_online_protocol_queues_full_batches_and_resumes_bit_for_bit():
    import io

    import torch

    from curation.metrics.ledger import ComputeLedger
    from curation.training.selector import OnlineSelector

    losses = np.random.default_rng(0).exponential(size=1000)
    score = lambda rows: losses[rows]  # noqa: E731

    def run(split_at=None):
        sb = SelectiveBackprop(beta=2, batch_size=32, seed=4).start(1000)
        assert isinstance(sb, OnlineSelector)
        out = []
        for step, start in enumerate(range(0, 1000, 50)):
            if step == split_at:  # checkpoint and restore through torch's safe loader
                buffer = io.BytesIO()
                torch.save(sb.state_dict(), buffer)
                sb = SelectiveBackprop(beta=2, batch_size=32, seed=4).start(1000)
                sb.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
            batch = sb.select(np.arange(start, start + 50), 1, score, ComputeLedger())
            assert len(batch) % 32 == 0 and len(sb._queue) < 32  # every full batch leaves the queue at once
            out.append(batch)
        return np.concatenate(out)

    assert np.array_equal(run(), run(split_at=7))


def test_warm_up_trains_every_candidate_in_its_own_epoch():
    """A candidate batch of (beta + 1) x B rows in warm-up selects all of them: all of them train now, not
    one batch now and the rest epochs later."""
    from curation.metrics.ledger import ComputeLedger

    sb = SelectiveBackprop(beta=2, batch_size=32, seed=0).start(960)
    chosen = [sb.select(np.arange(lo, lo + 96), 0, None, ComputeLedger()) for lo in range(0, 960, 96)]
    assert [len(c) for c in chosen] == [96] * 10 and np.array_equal(np.concatenate(chosen), np.arange(960))
