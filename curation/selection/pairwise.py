"""The pairwise submodular objective of Böther et al. (MLSys 2025), with centralized greedy.

    f(S) = alpha * sum_{v in S} u(v)  -  beta * sum_{(v,w) in E, v,w in S} s(v, w)

over the symmetric k-NN similarity graph of the embeddings (knn.py; each undirected edge counted once)
and a per-sample utility u (a score, or ``density``: the mean similarity of a point to its neighbours).
The functions below take a graph as CSR rows = candidates, columns = all N points, so that they work
unchanged on one partition of the rows (the distributed bounding and partition greedy reuse them).
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import scipy.sparse as sp

from curation.errors import CurationError
from curation.selection.base import SelectionInput, Selector, check_seed, register_selector, resolve_budget
from curation.selection.coresets import check_source
from curation.selection.knn import check_k_neighbors, knn_graph
from curation.selection.plans import Plan

DENSITY = "density"


def density(graph: sp.csr_matrix) -> np.ndarray:
    """Mean similarity of each row to its neighbours (0 for a point without neighbours)."""
    degree = np.diff(graph.indptr)
    return np.asarray(graph.sum(axis=1)).ravel() / np.maximum(degree, 1)


def gains(graph: sp.csr_matrix, utility: np.ndarray, selected: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """gain(v | S) = alpha*u(v) - beta * sum_{w in S, (v,w) in E} s(v,w) for every row v (S as a mask)."""
    return alpha * utility - beta * (graph @ selected.astype(np.float64))


def gain_bounds(
    graph: sp.csr_matrix,
    utility: np.ndarray,
    alpha: float,
    beta: float,
    selected: np.ndarray | None = None,
    discarded: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) of gain(v | S) over every S that contains ``selected`` and avoids ``discarded`` (masks).

    With nothing decided: max = alpha*u(v), min = alpha*u(v) - beta * (sum over all neighbours).
    A selected neighbour surely lowers the gain; a discarded one no longer can.
    """
    n = graph.shape[1]
    selected = np.zeros(n, bool) if selected is None else selected
    discarded = np.zeros(n, bool) if discarded is None else discarded
    return gains(graph, utility, ~discarded, alpha, beta), gains(graph, utility, selected, alpha, beta)


def objective(graph: sp.csr_matrix, utility: np.ndarray, rows: np.ndarray, alpha: float, beta: float) -> float:
    """f(S) for the rows S of a square symmetric graph."""
    rows = np.asarray(rows, dtype=np.int64)
    inside = graph[rows][:, rows].sum() / 2.0  # each undirected edge appears twice
    return float(alpha * utility[rows].sum() - beta * inside)


def greedy(
    graph: sp.csr_matrix, utility: np.ndarray, k: int, alpha: float, beta: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Centralized greedy: ``k`` rows, each of largest gain given those before (equal gains in a seeded order).

    Gains only fall, so a heap of possibly stale gains is exact: a popped entry that is stale is pushed
    back with its current gain. Returns the rows in order and their gains.
    """
    n = graph.shape[0]
    if not 1 <= k <= n:
        raise CurationError(f"cannot choose {k} of {n} candidates", f"give k between 1 and {n}")
    current = alpha * np.asarray(utility, dtype=np.float64)
    ties = np.random.default_rng(seed).permutation(n)
    heap = list(zip((-current).tolist(), ties.tolist(), range(n)))
    heapq.heapify(heap)
    rows, chosen = [], []
    while len(rows) < k:
        negative_gain, tie, v = heapq.heappop(heap)
        if -negative_gain != current[v]:
            heapq.heappush(heap, (-float(current[v]), tie, v))
            continue
        rows.append(v)
        chosen.append(-negative_gain)
        start, stop = graph.indptr[v], graph.indptr[v + 1]
        current[graph.indices[start:stop]] -= beta * graph.data[start:stop]
    return np.array(rows, dtype=np.int64), np.array(chosen)


def _check_weight(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise CurationError(f"{name} must be a finite number >= 0, got {value!r}", f"give {name} like 1.0")
    return float(value)


@register_selector
class Pairwise(Selector):
    """Pairwise submodular objective, greedy: high utility, few similar pairs (Böther et al. 2025).

    Learned: ``ranking_``, ``gains_`` (each one's gain when chosen), ``objective_``.
    """

    name = "pairwise"

    def __init__(
        self,
        budget: int | float = 0.1,
        seed: int = 0,
        alpha: float = 1.0,
        beta: float = 1.0,
        k_neighbors: int = 10,
        utility: str = DENSITY,
        source: str = "embeddings",
    ):
        self.budget = budget
        self.seed = seed
        self.alpha = alpha
        self.beta = beta
        self.k_neighbors = k_neighbors
        self.utility = utility
        self.source = source

    def _fit(self, data: SelectionInput) -> Plan:
        check_seed(self.seed)
        alpha, beta = _check_weight("alpha", self.alpha), _check_weight("beta", self.beta)
        check_source(self.source)
        k = resolve_budget(self.budget, data.n)
        score = None if self.utility == DENSITY else data.score(self.utility)
        graph = knn_graph(data.matrix(self.source), check_k_neighbors(self.k_neighbors))
        utility = density(graph) if score is None else score
        self.ranking_, self.gains_ = greedy(graph, utility, k, alpha, beta, int(self.seed))
        self.objective_ = objective(graph, utility, self.ranking_, alpha, beta)
        return self._subset(data, self.ranking_)
