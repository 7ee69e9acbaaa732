"""Score and geometry coresets: top-k by a score, class-balanced top-k, k-center greedy."""

from __future__ import annotations

import numpy as np

from curation.errors import CurationError
from curation.selection.base import SelectionInput, Selector, check_seed, register_selector, resolve_budget
from curation.selection.plans import Plan

SOURCES = ("embeddings", "features", "gradients")


def largest_remainder(sizes: np.ndarray, k: int) -> np.ndarray:
    """Split ``k`` over groups proportionally to ``sizes`` (Hamilton's method); ties go to the larger group,
    then the earlier one. Each share is at most its group's size when k <= sum(sizes)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    if total == 0:
        return np.zeros_like(sizes)
    exact = sizes * k  # shares are exact / total; integer arithmetic keeps the remainders exact
    quotas, remainders = exact // total, exact % total
    short = k - int(quotas.sum())
    order = np.lexsort((np.arange(len(sizes)), -sizes, -remainders))
    quotas[order[:short]] += 1
    return quotas


def class_quotas(labels: np.ndarray, k: int, at_least_one: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The classes and each one's share of ``k`` by largest remainder.

    With ``at_least_one``, a class left at 0 takes one slot from the class most over its exact share
    (among those with two or more).
    """
    classes, sizes = np.unique(labels, return_counts=True)
    quotas = largest_remainder(sizes, k)
    if at_least_one:
        if k < len(classes):
            raise CurationError(
                f"budget {k} is below the {len(classes)} classes", f"give a budget of at least {len(classes)}"
            )
        share = sizes * k / sizes.sum()
        for empty in np.flatnonzero(quotas == 0):
            donor = int(np.argmax(np.where(quotas >= 2, quotas - share, -np.inf)))
            quotas[donor] -= 1
            quotas[empty] = 1
    return classes, quotas


def _ranked(score: np.ndarray, largest: bool, seed: int) -> np.ndarray:
    """Rows by score (best first); equal scores in a seeded random order."""
    ties = np.random.default_rng(seed).permutation(len(score))
    return np.lexsort((ties, -score if largest else score))


def check_source(source) -> None:
    if source not in SOURCES:
        raise CurationError(f"unknown source {source!r}", f"choose one of: {', '.join(SOURCES)}")


def _check_largest(largest) -> None:
    if not isinstance(largest, (bool, np.bool_)):
        raise CurationError(f"largest must be true or false, got {largest!r}", "give largest=True or largest=False")


@register_selector
class TopK(Selector):
    """Top-k: the samples with the largest (or smallest) score, e.g. loss, EL2N or forgetting counts."""

    name = "topk"

    def __init__(self, budget: int | float = 0.1, seed: int = 0, score: str = "loss", largest: bool = True):
        self.budget = budget
        self.seed = seed
        self.score = score
        self.largest = largest

    def _fit(self, data: SelectionInput) -> Plan:
        check_seed(self.seed)
        _check_largest(self.largest)
        k = resolve_budget(self.budget, data.n)
        return self._subset(data, _ranked(data.score(self.score), bool(self.largest), int(self.seed))[:k])


@register_selector
class BalancedTopK(TopK):
    """Top-k inside each class; the budget split over classes by size (largest remainder)."""

    name = "topk-balanced"

    def _fit(self, data: SelectionInput) -> Plan:
        check_seed(self.seed)
        _check_largest(self.largest)
        k = resolve_budget(self.budget, data.n)
        score = data.score(self.score)
        classes, quotas = class_quotas(data.labels, k)
        rows = []
        for label, quota in zip(classes, quotas):
            members = np.flatnonzero(data.labels == label)
            rows.append(members[_ranked(score[members], bool(self.largest), int(self.seed))[:quota]])
        self.quotas_ = dict(zip(classes.tolist(), quotas.tolist()))
        return self._subset(data, np.concatenate(rows))


def kcenter_greedy(x: np.ndarray, k: int, first: int) -> tuple[np.ndarray, float]:
    """Sener & Savarese's greedy 2-approximation of k-center: each new center is the point farthest from
    all centers so far. Returns the rows in order and the covering radius (0 when every point is a center)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.einsum("ij,ij->i", x, x)
    nearest = np.full(len(x), np.inf, dtype=np.float32)  # squared distance to the closest center
    rows = np.empty(k, dtype=np.int64)
    row = first
    for i in range(k):
        rows[i] = row
        distance = norms - 2 * (x @ x[row]) + norms[row]
        np.minimum(nearest, distance, out=nearest)
        nearest[row] = -1.0  # centers are never chosen again, even among duplicates
        row = int(np.argmax(nearest))
    return rows, float(np.sqrt(max(0.0, float(nearest.max()))))


@register_selector
class KCenter(Selector):
    """k-center greedy (Sener & Savarese 2018): the subset whose farthest point is nearest.

    Learned: ``radius_``, the largest distance from a point to its nearest chosen center.
    """

    name = "kcenter"

    def __init__(self, budget: int | float = 0.1, seed: int = 0, source: str = "embeddings"):
        self.budget = budget
        self.seed = seed
        self.source = source

    def _fit(self, data: SelectionInput) -> Plan:
        check_seed(self.seed)
        check_source(self.source)
        k = resolve_budget(self.budget, data.n)
        x = data.matrix(self.source)
        rows, self.radius_ = kcenter_greedy(x, k, int(np.random.default_rng(self.seed).integers(data.n)))
        return self._subset(data, rows)
