"""Exact order statistics over arrays that stay on the workers (one sorted array per partition).

``kth_largest`` finds the k-th largest value of the union without moving the arrays: each round,
every partition sends a few evenly spaced values of what lies inside the current open interval
(lo, hi); their union is the next set of thresholds, and every partition counts its values at or
above and strictly above each one. The thresholds whose counts straddle k narrow the interval (or
hit the value exactly); once at most ``GATHER_MAX`` values are left inside, they are fetched and
ranked. The driver holds only thresholds and counts; a round narrows the interval ~``SAMPLES`` fold.
"""

from __future__ import annotations

import numpy as np

SAMPLES = 256  # values each partition sends per round
GATHER_MAX = 65_536  # values inside the interval that are fetched outright


def _inside(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return values[np.searchsorted(values, lo, "right") : np.searchsorted(values, hi, "left")]


def _spread(values: np.ndarray, lo: float, hi: float, samples: int) -> tuple[int, np.ndarray]:
    """How many values lie in (lo, hi), and up to ``samples`` of them, evenly spaced by rank."""
    inside = _inside(values, lo, hi)
    picks = np.unique(np.linspace(0, len(inside) - 1, samples).astype(np.int64)) if len(inside) else []
    return len(inside), inside[picks]


def _counts(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per threshold: values >= it and values > it."""
    n = len(values)
    return np.stack([n - np.searchsorted(values, thresholds, "left"), n - np.searchsorted(values, thresholds, "right")])


def kth_largest(client, parts: list, k: int) -> float:
    """The k-th largest value over the sorted arrays behind the futures ``parts`` (-inf when fewer than k, +inf
    for k <= 0)."""
    if k <= 0:
        return np.inf
    lo, hi, above = -np.inf, np.inf, 0  # invariant: the answer lies in (lo, hi); ``above`` values are >= hi
    while True:
        spread = client.gather([client.submit(_spread, part, lo, hi, SAMPLES, pure=False) for part in parts])
        inside = sum(count for count, _ in spread)
        if above + inside < k:
            return -np.inf
        if inside <= GATHER_MAX:
            values = np.concatenate(client.gather([client.submit(_inside, part, lo, hi, pure=False) for part in parts]))
            return float(np.sort(values)[::-1][k - above - 1])
        thresholds = np.unique(np.concatenate([values for _, values in spread]))
        ge, gt = np.sum(client.gather([client.submit(_counts, part, thresholds, pure=False) for part in parts]), axis=0)
        exact = np.flatnonzero((gt < k) & (ge >= k))
        if exact.size:
            return float(thresholds[exact[0]])
        split = int(np.count_nonzero(gt >= k))  # thresholds [0, split) lie under the answer, the rest above it
        if split:
            lo = float(thresholds[split - 1])
        if split < len(thresholds):
            hi, above = float(thresholds[split]), int(ge[split])
