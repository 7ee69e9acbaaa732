"""Coverage and occupancy: how much of the data a plan has shown the model, measured and in theory.

Coverage after k epochs is the fraction of distinct samples drawn at least once; occupancy is how
many times each sample was drawn. ``CoverageTracker`` follows any plan epoch by epoch (overall and
per class); ``plan_statistics`` computes both exactly for generated plans of any N, block by block,
without ever holding the plan or a per-sample array of size N.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from curation.selection.sampling import BLOCK, RS2, SOFT, _blocks, block_counts, block_draws, per_epoch


def soft_coverage(ratio: float, epochs: int, n: int | None = None) -> float:
    """Expected coverage of soft sampling: 1 - (1 - 1/N)^(m k), or 1 - exp(-r k) for large N."""
    if n is None:
        return 1 - math.exp(-ratio * epochs)
    return 1 - (1 - 1 / n) ** (per_epoch(n, ratio) * epochs)


def rs2_coverage(ratio: float, epochs: int) -> float:
    """Expected coverage of RS2 (a fresh distinct subset each epoch): 1 - (1 - r)^k."""
    return 1 - (1 - ratio) ** epochs


def poisson_pmf(mean: float, kmax: int) -> np.ndarray:
    """P(X = 0..kmax) for X ~ Poisson(mean): the occupancy law of soft sampling after k epochs (mean r k)."""
    k = np.arange(kmax + 1)
    return (
        np.exp(-mean + k * math.log(mean) - np.array([math.lgamma(i + 1) for i in k]))
        if mean > 0
        else (k == 0).astype(float)
    )


def expected_epochs_to_cover_all(n: int, ratio: float) -> float:
    """Coupon collector: epochs until every sample was drawn at least once, ~ (ln N + 0.5772) / r."""
    return (math.log(n) + 0.5772156649) / ratio


@dataclass
class CoverageTracker:
    """Counts draws per position (0..N-1) of a plan, epoch by epoch; per class when labels are given."""

    n: int
    labels: np.ndarray | None = None
    counts: np.ndarray = field(init=False)
    history: list[dict] = field(default_factory=list, init=False)

    def __post_init__(self):
        self.counts = np.zeros(self.n, dtype=np.uint32)
        if self.labels is not None:
            self.labels = np.asarray(self.labels)
            self._classes, self._class_of = np.unique(self.labels, return_inverse=True)
            self._class_sizes = np.bincount(self._class_of)

    def update(self, positions: np.ndarray) -> dict:
        """Add one epoch's draws (row positions, duplicates allowed); returns that epoch's summary."""
        self.counts += np.bincount(positions, minlength=self.n).astype(np.uint32)
        seen = self.counts > 0
        summary = {
            "epoch": len(self.history),
            "coverage": float(seen.mean()),
            "draws": int(self.counts.sum()),
            "distinct": int(seen.sum()),
        }
        if self.labels is not None:
            per_class = np.bincount(self._class_of[seen], minlength=len(self._classes)) / self._class_sizes
            summary["coverage_per_class"] = {int(c): float(v) for c, v in zip(self._classes, per_class)}
        self.history.append(summary)
        return summary

    def occupancy(self) -> np.ndarray:
        """Histogram: how many samples were drawn 0, 1, 2, ... times so far."""
        return np.bincount(self.counts)


def _block_stats(kind: str, seed: int, counts: np.ndarray, block: int, length: int) -> tuple:
    """Exact first-seen epochs and occupancy of one block over all epochs (``counts``: epochs x blocks)."""
    epochs = len(counts)
    first = np.full(length, epochs, dtype=np.uint8)
    draws = []
    for epoch in reversed(range(epochs)):  # later epochs first: the earliest assignment wins
        d = block_draws(kind, seed, epoch, block, int(counts[epoch, block]), length)
        first[d] = epoch
        draws.append(d)
    occupancy = np.bincount(np.bincount(np.concatenate(draws).astype(np.intp), minlength=length))
    return np.bincount(first, minlength=epochs + 1), occupancy, sum(len(d) for d in draws)


def plan_statistics(kind: str, n: int, ratio: float, epochs: int, seed: int = 0, workers: int = 2) -> dict:
    """Exact coverage per epoch and occupancy histogram of a generated plan (soft or rs2), any N."""
    if kind not in (SOFT, RS2):
        raise ValueError(f"plan statistics are for generated plans ({SOFT}, {RS2}), not {kind!r}")
    if epochs > 254:
        raise ValueError("at most 254 epochs")
    m = per_epoch(n, ratio)
    lengths = _blocks(n)
    first_seen = np.zeros(epochs + 1, dtype=np.int64)
    occupancy = np.zeros(1, dtype=np.int64)
    draws = 0
    counts = np.stack([block_counts(kind, seed, e, n, m) for e in range(epochs)])
    with ThreadPoolExecutor(max_workers=workers) as pool:  # numpy releases the GIL in the heavy parts
        for f, occ, d in pool.map(lambda b: _block_stats(kind, seed, counts, b, int(lengths[b])), range(len(lengths))):
            first_seen += f
            occupancy = np.pad(occupancy, (0, max(0, len(occ) - len(occupancy))))
            occupancy[: len(occ)] += occ
            draws += d
    coverage = np.cumsum(first_seen[:epochs]) / n
    return {
        "kind": kind,
        "n": n,
        "ratio": ratio,
        "epochs": epochs,
        "seed": seed,
        "per_epoch": m,
        "draws": draws,
        "coverage": coverage.tolist(),
        "occupancy": occupancy.tolist(),
        "block": BLOCK,
    }
