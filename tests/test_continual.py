"""History mixing and retraining triggers."""

import numpy as np
import pytest

from curation.continual import triggers
from curation.continual.mixing import mixed_batches
from curation.errors import CurationError

HISTORY = [np.arange(0, 100), np.arange(100, 200), np.arange(200, 300), np.arange(300, 400)]
NEW = np.arange(1000, 1064)


def test_batches_mix_t_new_with_history_without_repeats():
    batches = list(mixed_batches(NEW, HISTORY, batch_size=16, new_per_batch=4, seed=1))
    assert len(batches) == 16
    new_seen = np.concatenate([b[:4] for b in batches])
    assert sorted(new_seen) == NEW.tolist()  # one pass over the new chunk
    for b in batches:
        assert len(b) == 16 and len(set(b.tolist())) == 16 and (b[4:] < 400).all()


def test_window_and_time_strategies():
    window = np.concatenate(list(mixed_batches(NEW, HISTORY, 32, 8, "window", window=1, seed=0)))
    assert set(window[window < 1000] // 100) == {3}  # only the last chunk
    old = np.concatenate([b[8:] for b in mixed_batches(np.arange(1000, 9000), HISTORY, 32, 8, "time", seed=0)])
    share = np.bincount(old // 100, minlength=4) / len(old)
    assert share == pytest.approx(np.array([1, 2, 3, 4]) / 10, abs=0.01)  # weight c + 1


def test_first_chunk_trains_on_new_data_only_and_bad_parameters():
    assert [len(b) for b in mixed_batches(NEW, [], 32, 8)] == [32, 32]
    with pytest.raises(CurationError, match="not in 1..B"):
        list(mixed_batches(NEW, HISTORY, 8, 9))
    with pytest.raises(CurationError, match="unknown history strategy"):
        list(mixed_batches(NEW, HISTORY, 32, 8, strategy="lifo"))


def test_triggers_explain_themselves():
    assert triggers.amount(1500, 1000).fire and not triggers.amount(10, 1000).fire
    assert triggers.elapsed(None).fire and not triggers.elapsed(10, 3600).fire
    rng = np.random.default_rng(0)
    same = triggers.drift(rng.normal(size=(500, 5)), rng.normal(size=(500, 5)))
    moved = triggers.drift(rng.normal(size=(500, 5)), rng.normal(0.5, 1, size=(500, 5)))
    assert not same.fire and moved.fire and "KS test" in moved.reason
    assert triggers.accuracy_drop(0.95, 0.80, 1000).fire
    assert not triggers.accuracy_drop(0.95, 0.94, 200).fire
