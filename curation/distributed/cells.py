"""Cells: a k-means of the embedding space, the shared coarse structure of the whole run.

The k-NN graph uses them as IVF lists (each point lives in its nearest cell; a query scans its
``nprobe`` nearest cells) and the partition greedy uses them to cut the candidates into partitions
that keep neighbours together. Training sees only a sample (at most ``SAMPLE_BYTES`` of it) and is
two-level (~sqrt(nlist) coarse cells, then the cells inside each), so it never compares a point with
all ``nlist`` centroids. Nor does finding a point's nearest cells: an HNSW graph over the centroids
answers that. (The coarse cells do not: at 40,000 cells a point's 8 nearest coarse centroids of 200
hold only 77% of its 8 nearest cells, as coarse centroids are means of many far-apart clusters; the
HNSW graph finds 99.7% of them, measured on the 10M benchmark's points.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import faiss
import numpy as np

POINTS_PER_CELL = 250  # cells hold ~250 points: the list size of the 1M-point, 4,000-list reference index
TRAIN_PER_CENTROID = 32  # sample points per fine centroid
SAMPLE_BYTES = 256 * 2**20  # cap on the training sample, whatever the dimension
HNSW_LINKS = 32  # graph neighbours per centroid
HNSW_SEARCH = 64  # candidates a search keeps (at least nprobe)
KMEANS_ITERATIONS = 10


def default_nlist(n: int, max_candidates: int) -> int:
    """Cells for n points: ~``POINTS_PER_CELL`` points each, and at least 16 per greedy partition (for balance)."""
    return max(1, min(n, max(16, round(n / POINTS_PER_CELL), math.ceil(16 * n / max_candidates))))


def sample_size(n: int, nlist: int, dim: int) -> int:
    """Training points: ``TRAIN_PER_CENTROID`` per cell, within ``SAMPLE_BYTES``."""
    return max(min(n, nlist), min(n, TRAIN_PER_CENTROID * nlist, SAMPLE_BYTES // (4 * dim)))


def _kmeans(x: np.ndarray, k: int, seed: int, per_centroid: int) -> np.ndarray:
    """k-means centroids, training on at most ``per_centroid`` points per centroid (a seeded subsample)."""
    km = faiss.Kmeans(
        x.shape[1],
        k,
        niter=KMEANS_ITERATIONS,
        seed=seed,
        min_points_per_centroid=1,
        max_points_per_centroid=per_centroid,
    )
    km.train(np.ascontiguousarray(x, dtype=np.float32))
    return km.centroids


@dataclass(frozen=True)
class Cells:
    """The cell centroids."""

    centroids: np.ndarray

    @property
    def nlist(self) -> int:
        return len(self.centroids)

    def probe(self, x: np.ndarray, nprobe: int) -> np.ndarray:
        """The ``nprobe`` nearest cells of each row (nearest first; -1 where fewer were reached), as int64."""
        index = faiss.IndexHNSWFlat(self.centroids.shape[1], HNSW_LINKS)
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # one thread builds the same graph every time: runs stay reproducible
        try:
            index.add(self.centroids)
        finally:
            faiss.omp_set_num_threads(threads)
        index.hnsw.efSearch = max(HNSW_SEARCH, nprobe)
        _, cells = index.search(np.ascontiguousarray(x, dtype=np.float32), min(nprobe, self.nlist))
        return cells


def train_cells(sample: np.ndarray, nlist: int, seed: int) -> Cells:
    """Two-level k-means on a sample: ~sqrt(nlist) coarse cells, the ``nlist`` cells shared out by coarse cell size."""
    nlist = min(nlist, len(sample))
    coarse = _kmeans(sample, max(1, round(math.sqrt(nlist))), seed, 256)
    index = faiss.IndexFlatL2(sample.shape[1])
    index.add(coarse)
    home = index.search(sample, 1)[1].ravel()
    sizes = np.bincount(home, minlength=len(coarse))
    shares = apportion(nlist, sizes)
    return Cells(
        np.concatenate(
            [_kmeans(sample[home == c], int(shares[c]), seed + int(c) + 1, len(sample)) for c in np.flatnonzero(shares)]
        )
    )


def apportion(total: int, sizes: np.ndarray) -> np.ndarray:
    """``total`` shared out in proportion to ``sizes`` (largest remainders, ties to the lower index); exact integers.

    Each share is at most its size when ``total`` <= ``sizes.sum()``.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    whole = int(sizes.sum())
    if whole == 0:
        return np.zeros(len(sizes), np.int64)
    shares, remainders = np.divmod(total * sizes, whole)
    extra = total - int(shares.sum())
    shares[np.argsort(-remainders, kind="stable")[:extra]] += 1
    return shares


def group_cells(fine: np.ndarray, counts: np.ndarray, parts: int) -> np.ndarray:
    """Cells into ``parts`` groups of about equal ``counts``, neighbouring cells together (recursive bisection).

    Each split cuts a group's occupied cells at the weighted median of their principal axis, with the
    weight shared between the halves in proportion to their numbers of parts.
    """
    group = np.zeros(len(fine), np.int64)
    todo = [(np.flatnonzero(counts), parts, 0)]
    while todo:
        cells, n_parts, first = todo.pop()
        if n_parts == 1 or len(cells) <= 1:
            group[cells] = first
            continue
        weight = counts[cells].astype(np.float64)
        centred = fine[cells] - np.average(fine[cells], axis=0, weights=weight)
        axis = np.linalg.svd(centred, full_matrices=False)[2][0]
        order = cells[np.argsort(centred @ axis, kind="stable")]
        left = n_parts // 2
        cut = int(np.searchsorted(np.cumsum(counts[order]), weight.sum() * left / n_parts))
        cut = min(max(cut, 1), len(order) - 1)
        todo += [(order[:cut], left, first), (order[cut:], n_parts - left, first + left)]
    return group
