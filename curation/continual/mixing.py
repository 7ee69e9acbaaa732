"""Proactive training batches: t new examples plus B - t from history (Prapas et al. 2021).

History strategies: ``uniform`` over all past rows, ``window`` over the last ``window`` chunks,
``time`` with chunk c drawn with weight c + 1 (recent chunks favoured). Inside a batch, history
rows are drawn without replacement.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from curation.choices import Strategy
from curation.errors import CurationError


def _history_pool(history: Sequence[np.ndarray], strategy: str, window: int) -> tuple[np.ndarray, np.ndarray | None]:
    """All eligible history rows and, for the time strategy, each row's sampling probability."""
    if strategy not in set(Strategy):
        raise CurationError(f"unknown history strategy {strategy!r}", f"use one of: {', '.join(Strategy)}")
    chunks = list(history)[-window:] if strategy == "window" else list(history)
    chunks_with_rows = [(c, rows) for c, rows in enumerate(chunks) if len(rows)]
    if not chunks_with_rows:
        return np.empty(0, dtype=np.int64), None
    pool = np.concatenate([rows for _, rows in chunks_with_rows]).astype(np.int64)
    if strategy != "time":
        return pool, None
    offset = len(history) - len(chunks)
    weights = np.concatenate([np.full(len(rows), (offset + c + 1) / len(rows)) for c, rows in chunks_with_rows])
    return pool, weights / weights.sum()


def mixed_batches(
    new_rows: np.ndarray,
    history: Sequence[np.ndarray],
    batch_size: int,
    new_per_batch: int,
    strategy: str = "uniform",
    window: int = 3,
    seed: int = 0,
) -> Iterator[np.ndarray]:
    """One pass over the new chunk in batches of ``new_per_batch`` new rows plus history rows.

    With no history yet, batches are all new rows (``batch_size`` of them).
    """
    if not 0 < new_per_batch <= batch_size:
        raise CurationError(
            f"t = {new_per_batch} new examples per batch of {batch_size} is not in 1..B",
            "choose t between 1 and the batch size",
        )
    if window < 1:
        raise CurationError(f"window {window} must be at least 1 chunk", "give a positive window")
    rng = np.random.default_rng(seed)
    pool, probs = _history_pool(history, strategy, window)
    new_rows = rng.permutation(np.asarray(new_rows, dtype=np.int64))
    step = new_per_batch if len(pool) else batch_size
    old = min(batch_size - new_per_batch, len(pool))
    for start in range(0, len(new_rows), step):
        fresh = new_rows[start : start + step]
        if not len(pool) or old == 0:
            yield fresh
            continue
        yield np.concatenate([fresh, rng.choice(pool, size=old, replace=False, p=probs)])
