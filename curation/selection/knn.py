"""k-nearest-neighbour similarity graphs (faiss), shared by facility location, CRAIG and the pairwise objective.

Similarity is a Gaussian kernel on squared L2 distance: ``s(v, w) = exp(-d2(v, w) / sigma)`` with
``sigma`` the median positive squared distance from a point to its k nearest neighbours. It lies in
(0, 1], is 1 for identical points and does not depend on the single largest distance in the data
(as ``max_d - d`` does). Neighbours are exact (``IndexFlatL2``) up to ``exact_max`` points and
approximate (``IndexHNSWFlat``) above. A graph is symmetric, ``W = max(W_knn, W_knn.T)``: an edge
exists when either end is among the other's k nearest. Graphs are CSR with float64 similarities
and int32 column indices; no step allocates N x N.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from curation.errors import CurationError

EXACT_MAX = 100_000  # exact search up to here: at 100k x 40 dims it is as fast as building HNSW
HNSW_M, HNSW_EF_CONSTRUCTION = 32, 80
DENSE_BLOCK = 2048  # rows per block when computing a dense similarity


def check_k_neighbors(k) -> int:
    """A positive integer neighbour count, or a one-line error."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise CurationError(f"k_neighbors must be a positive integer, got {k!r}", "give a count like 10")
    return int(k)


def _faiss():
    try:
        import faiss
    except ImportError:
        raise CurationError("k-NN graphs need faiss", "install faiss-cpu (pip install faiss-cpu)") from None
    return faiss


def neighbors(x: np.ndarray, k: int, exact_max: int = EXACT_MAX) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The k nearest other points of every row of ``x``, as (rows, cols, squared distances) triplets.

    A point never lists itself; with n <= k every other point is a neighbour. Duplicated points are
    neighbours at distance 0.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, dim = x.shape
    k = min(check_k_neighbors(k), n - 1)
    if k == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    faiss = _faiss()
    if n <= exact_max:
        index = faiss.IndexFlatL2(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, HNSW_M)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = max(64, 2 * (k + 1))
    index.add(x)
    d2, idx = index.search(x, k + 1)
    rows = np.repeat(np.arange(n), k + 1).reshape(n, k + 1)
    drop = idx == rows  # the point itself, or else the farthest of the k + 1
    drop[~drop.any(axis=1), -1] = True
    keep = ~drop & (idx >= 0)
    return rows[keep], idx[keep].astype(np.int64), np.maximum(d2[keep], 0)


def kernel_scale(d2: np.ndarray) -> float:
    """sigma: the median positive squared neighbour distance (1.0 when every distance is 0)."""
    positive = d2[d2 > 0]
    return float(np.median(positive)) if positive.size else 1.0


def knn_graph(x: np.ndarray, k: int, self_loops: bool = False, exact_max: int = EXACT_MAX) -> sp.csr_matrix:
    """The symmetric k-NN similarity graph of the rows of ``x`` (self-similarity 1 on the diagonal if asked)."""
    n = len(x)
    rows, cols, d2 = neighbors(x, k, exact_max)
    sim = np.exp(-d2.astype(np.float64) / kernel_scale(d2))
    graph = sp.csr_matrix((sim, (rows, cols)), shape=(n, n))
    graph = graph.maximum(graph.T).tocsr()
    if self_loops:
        graph = (graph + sp.identity(n, format="csr")).tocsr()  # no diagonal before: sum = set
    graph.eliminate_zeros()
    graph.sort_indices()
    return _compact(graph)


def _compact(graph: sp.csr_matrix) -> sp.csr_matrix:
    """float64 data, int32 indices where they fit (what apricot's sparse kernels expect too)."""
    index_type = np.int32 if graph.nnz < np.iinfo(np.int32).max else np.int64
    return sp.csr_matrix(
        (graph.data.astype(np.float64), graph.indices.astype(index_type), graph.indptr.astype(index_type)),
        shape=graph.shape,
    )


def dense_similarity(x: np.ndarray, k: int) -> np.ndarray:
    """The full (n, n) float32 kernel matrix, sigma from the k nearest neighbours as for the sparse graph."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    _, _, d2 = neighbors(x, k, exact_max=n)
    scale = np.float32(-1.0 / kernel_scale(d2))
    norms = np.einsum("ij,ij->i", x, x)
    out = np.empty((n, n), dtype=np.float32)
    for start in range(0, n, DENSE_BLOCK):
        block = out[start : start + DENSE_BLOCK]
        np.matmul(x[start : start + DENSE_BLOCK], x.T, out=block)
        block *= -2
        block += norms[start : start + DENSE_BLOCK, None]
        block += norms[None, :]
        np.maximum(block, 0, out=block)
        block[np.arange(len(block)), np.arange(start, start + len(block))] = 0  # exact zero self-distance
        block *= scale
        np.exp(block, out=block)
    return out
