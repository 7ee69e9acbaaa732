"""Facility location, f(S) = sum_v max_{s in S} sim(s, v), maximised greedily under |S| = k.

The similarity is a dense (n, n) array (n <= ``dense_max``) or a sparse CSR k-NN graph with self
loops (knn.py); row i lists the points candidate i covers. Three optimizers share one gain oracle:

- ``naive``: every remaining gain, every step (the reference; O(n * nnz)).
- ``lazy`` (Minoux 1978): a heap of upper bounds (earlier gains, which only shrink by
  submodularity); stale bounds on top are re-evaluated, in growing vectorised batches, until the top
  is exact. A bound is stale only if a choice since its evaluation raised the coverage of a point
  that row covers (on a k-NN graph: a few hundred rows per step, not all n). Same result as naive
  (ties go to the lowest row in both).
- ``stochastic`` (Mirzasoleiman et al. 2015): each step, the best of ``(n/k) log(1/epsilon)``
  random remaining candidates; (1 - 1/e - epsilon) in expectation.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from curation.errors import CurationError
from curation.selection.base import SelectionInput, Selector, check_seed, register_selector, resolve_budget
from curation.selection.coresets import check_source
from curation.selection.knn import check_k_neighbors, dense_similarity, knn_graph
from curation.selection.plans import Plan

OPTIMIZERS = ("naive", "lazy", "stochastic")
CHUNK_ELEMENTS = 1 << 23  # matrix entries per block of work (bounds temporary memory)
BATCH_ELEMENTS = 4096  # the lazy optimizer re-evaluates about this many entries' worth of bounds first


def _positions(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the entries of CSR ``rows`` (concatenated, in order) and each row's length."""
    starts, lengths = indptr[rows], indptr[rows + 1] - indptr[rows]
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(lengths.sum()), lengths


class Coverage:
    """The gain oracle: how well each point is covered so far, and the gain of adding candidates."""

    def __init__(self, similarity):
        self.sparse = sp.issparse(similarity)
        if self.sparse:
            similarity = similarity.tocsr()
            if not similarity.has_canonical_format:  # repeated entries are summed (scipy's convention)
                similarity = similarity.copy()
                similarity.sum_duplicates()
        elif not np.issubdtype(similarity.dtype, np.floating):
            similarity = similarity.astype(np.float64)
        values = similarity.data if self.sparse else similarity
        if values.size and not (values.min() >= 0 and np.isfinite(values.max())):  # NaN fails the first test
            raise CurationError(
                "similarities must be finite and >= 0", "rebuild the similarity (knn.py builds valid ones)"
            )
        if self.sparse:
            self.row_of = np.repeat(np.arange(similarity.shape[0]), np.diff(similarity.indptr))
            self.by_column = similarity.T.tocsr()  # which candidates cover a point, and how much
        self.sim = similarity
        self.n = similarity.shape[0]
        self.covered = np.zeros(similarity.shape[1], dtype=similarity.dtype)
        self.total = 0.0  # sum of covered (dense)
        self._row = np.empty_like(self.covered)
        self.row_cost = max(1, similarity.nnz // self.n if self.sparse else similarity.shape[1])

    def gains(self, rows: np.ndarray) -> np.ndarray:
        """f(S + {i}) - f(S) for each candidate row i."""
        rows = np.asarray(rows, dtype=np.int64)
        if not self.sparse:  # row by row on views: sum(max(s_i, covered)) - sum(covered), float64 sums
            totals = np.array(
                [np.maximum(self.sim[row], self.covered, out=self._row).sum(dtype=np.float64) for row in rows.tolist()]
            )
            return np.maximum(totals - self.total, 0)
        positions, lengths = _positions(self.sim.indptr, rows)
        excess = np.maximum(self.sim.data[positions] - self.covered[self.sim.indices[positions]], 0)
        return np.bincount(np.repeat(np.arange(len(rows)), lengths), weights=excess, minlength=len(rows))

    def all_gains(self) -> np.ndarray:
        """The gain of every row."""
        if not self.sparse:  # nothing covered yet: the gains are the row sums, one vectorised pass
            return self.sim.sum(axis=1, dtype=np.float64) if self.total == 0 else self.gains(np.arange(self.n))
        excess = np.maximum(self.sim.data - self.covered[self.sim.indices], 0)
        return np.bincount(self.row_of, weights=excess, minlength=self.n)

    def add(self, row: int) -> np.ndarray | slice:
        """Put candidate ``row`` in S; return the rows whose gain it changed (as an index or a slice)."""
        if not self.sparse:
            changed = bool((self.sim[row] > self.covered).any())
            np.maximum(self.covered, self.sim[row], out=self.covered)
            self.total = self.covered.sum(dtype=np.float64)
            return slice(None) if changed else slice(0)
        start, stop = self.sim.indptr[row], self.sim.indptr[row + 1]
        cols, values = self.sim.indices[start:stop], self.sim.data[start:stop]
        before = self.covered[cols]
        up = values > before
        cols, before = cols[up], before[up]
        self.covered[cols] = values[up]
        positions, lengths = _positions(self.by_column.indptr, cols)  # candidates that cover those points
        hit = self.by_column.data[positions] > np.repeat(before, lengths)  # ... by more than they were
        return self.by_column.indices[positions[hit]]


@dataclass
class Greedy:
    """A greedy run: the rows in the order chosen, each one's gain when chosen, and f(S)."""

    rows: np.ndarray
    gains: np.ndarray
    objective: float


def naive_greedy(oracle: Coverage, k: int) -> tuple[list[int], list[float]]:
    """Every gain, every step; the first row among equal gains."""
    taken = np.zeros(oracle.n, dtype=bool)
    rows, gains = [], []
    for _ in range(k):
        g = oracle.all_gains()
        g[taken] = -np.inf
        best = int(np.argmax(g))
        taken[best] = True
        rows.append(best)
        gains.append(float(g[best]))
        oracle.add(best)
    return rows, gains


def lazy_greedy(oracle: Coverage, k: int) -> tuple[list[int], list[float]]:
    """Minoux's lazy greedy over a heap of (-bound, row): the same picks as naive_greedy."""
    heap = list(zip((-oracle.all_gains()).tolist(), range(oracle.n)))
    heapq.heapify(heap)
    flags = bytearray(oracle.n)  # 1 = the row's bound is stale; a numpy view for vectorised marking
    stale = np.frombuffer(flags, dtype=np.uint8)
    first_batch = max(1, BATCH_ELEMENTS // oracle.row_cost)
    largest_batch = max(1, CHUNK_ELEMENTS // oracle.row_cost)
    rows, gains = [], []
    for _ in range(k):
        batch = first_batch
        while flags[heap[0][1]]:  # re-evaluate the stale bounds on top, `batch` at a time, doubling
            todo = []
            while heap and flags[heap[0][1]] and len(todo) < batch:
                todo.append(heapq.heappop(heap)[1])
            fresh = oracle.gains(np.array(todo))
            stale[todo] = 0
            for row, gain in zip(todo, (-fresh).tolist()):
                heapq.heappush(heap, (gain, row))
            batch = min(2 * batch, largest_batch)
        negative_gain, best = heapq.heappop(heap)
        rows.append(best)
        gains.append(-negative_gain)
        stale[oracle.add(best)] = 1
    return rows, gains


def stochastic_greedy(oracle: Coverage, k: int, epsilon: float, seed: int) -> tuple[list[int], list[float]]:
    """Each step, the best of a seeded sample (without replacement) of the remaining rows."""
    rng = np.random.default_rng(seed)
    sample = max(1, math.ceil(oracle.n / k * math.log(1 / epsilon)))
    pool, size = np.arange(oracle.n), oracle.n
    rows, gains = [], []
    for _ in range(k):
        positions = rng.choice(size, sample, replace=False) if sample < size else np.arange(size)
        g = oracle.gains(pool[positions])
        best = int(np.argmax(g))
        row = int(pool[positions[best]])
        pool[positions[best]], size = pool[size - 1], size - 1
        rows.append(row)
        gains.append(float(g[best]))
        oracle.add(row)
    return rows, gains


def maximize(similarity, k: int, optimizer: str = "lazy", epsilon: float = 0.001, seed: int = 0) -> Greedy:
    """Greedy facility location: ``k`` rows of ``similarity`` (dense array or CSR, entries >= 0)."""
    check_optimizer(optimizer, epsilon)
    oracle = Coverage(similarity)
    if not 1 <= k <= oracle.n:
        raise CurationError(f"cannot choose {k} of {oracle.n} candidates", f"give k between 1 and {oracle.n}")
    if optimizer == "naive":
        rows, gains = naive_greedy(oracle, k)
    elif optimizer == "lazy":
        rows, gains = lazy_greedy(oracle, k)
    else:
        rows, gains = stochastic_greedy(oracle, k, epsilon, seed)
    return Greedy(np.array(rows, dtype=np.int64), np.array(gains), float(oracle.covered.sum(dtype=np.float64)))


def objective(similarity, rows) -> float:
    """f(S) for the rows S of a dense or sparse similarity, in float64: the one yardstick for every optimizer."""
    rows = np.asarray(rows, dtype=np.int64)
    covered = np.zeros(similarity.shape[1], dtype=np.float64)
    if sp.issparse(similarity):
        if len(rows):
            covered = similarity.tocsr()[rows].max(axis=0).toarray().ravel().astype(np.float64)
    else:
        step = max(1, CHUNK_ELEMENTS // max(1, similarity.shape[1]))
        for start in range(0, len(rows), step):
            np.maximum(covered, similarity[rows[start : start + step]].max(axis=0), out=covered)
    return float(covered.sum())


def similarity_for(x: np.ndarray, k_neighbors: int, dense_max: int):
    """Dense kernel matrix for n <= dense_max, else the k-NN graph with self loops."""
    if len(x) <= dense_max:
        return dense_similarity(x, k_neighbors)
    return knn_graph(x, k_neighbors, self_loops=True)


def check_optimizer(optimizer, epsilon) -> None:
    if optimizer not in OPTIMIZERS:
        raise CurationError(f"unknown optimizer {optimizer!r}", f"choose one of: {', '.join(OPTIMIZERS)}")
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0 < epsilon < 1:
        raise CurationError(f"epsilon must be in (0, 1), got {epsilon!r}", "give a value like 0.001")


def check_dense_max(dense_max) -> None:
    if isinstance(dense_max, bool) or not isinstance(dense_max, (int, np.integer)) or dense_max < 0:
        raise CurationError(
            f"dense_max must be a non-negative integer, got {dense_max!r}",
            "give a size like 20000 (0: always a k-NN graph)",
        )


@register_selector
class FacilityLocation(Selector):
    """Facility location: the subset that best represents every point (greedy k-medoids).

    Learned: ``ranking_`` (rows in greedy order), ``gains_`` (each one's gain when chosen),
    ``objective_`` (f of the subset).
    """

    name = "facility-location"

    def __init__(
        self,
        budget: int | float = 0.1,
        seed: int = 0,
        optimizer: str = "lazy",
        epsilon: float = 0.001,
        source: str = "embeddings",
        k_neighbors: int = 10,
        dense_max: int = 20_000,
    ):
        self.budget = budget
        self.seed = seed
        self.optimizer = optimizer
        self.epsilon = epsilon
        self.source = source
        self.k_neighbors = k_neighbors
        self.dense_max = dense_max

    def _fit(self, data: SelectionInput) -> Plan:
        check_seed(self.seed)
        check_optimizer(self.optimizer, self.epsilon)
        check_k_neighbors(self.k_neighbors)
        check_dense_max(self.dense_max)
        check_source(self.source)
        k = resolve_budget(self.budget, data.n)
        x = data.matrix(self.source)
        result = maximize(
            similarity_for(x, self.k_neighbors, self.dense_max), k, self.optimizer, float(self.epsilon), int(self.seed)
        )
        self.ranking_, self.gains_, self.objective_ = result.rows, result.gains, result.objective
        return self._subset(data, result.rows)
