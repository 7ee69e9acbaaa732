"""The k-NN similarity graph, built partition by partition and stored as partitioned Parquet edge lists.

The same graph as ``knn.knn_graph`` (similarity exp(-d2/sigma), sigma the median positive squared
distance to the k nearest neighbours, an edge when either end is among the other's k nearest),
built without one process ever holding more than one partition's embeddings plus one shard:

1. ``scan``: each partition's embeddings (and utilities) are read and checked; a seeded sample is kept.
2. cells: a two-level k-means of the sample (cells.py), sent to every task.
3. index: each partition puts its points into their nearest cell and writes its own faiss shard (IVF
   lists; exact ``IndexFlatL2`` up to ``exact_max`` points in all), and ``nodes/`` (sample_id, cell).
4. search: partition i loads the shards one after another and keeps a running top-(k+1) for its
   queries (each probes its ``nprobe`` nearest cells, worked out once); its directed edges go to
   ``knn/``, bucketed by the partition of the neighbour.
5. scale: sigma, exactly, from the positive distances that stay on the workers (order.py).
6. symmetrize: partition j joins its edges with the reverse of every edge into j from each bucket j
   -> ``edges/part-j.parquet`` (src, dst, sim float32; global row numbers, sorted).

Row numbers are global: partition j holds rows offsets[j]..offsets[j+1]-1 in file order.
"""

from __future__ import annotations

import json
from operator import getitem
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.distributed.cells import Cells, sample_size, train_cells
from curation.distributed.cluster import Tasks
from curation.distributed.files import part_name, write_atomic, write_parquet
from curation.distributed.order import kth_largest
from curation.distributed.source import Source, check_aligned
from curation.selection.knn import EXACT_MAX, kernel_scale

BUCKETS = b"curation.buckets"  # knn/ file metadata: partition of the neighbour -> row group


@dataclass(frozen=True)
class Scan:
    """What the first read of the input found: rows per partition and the cells' training sample."""

    ranges: list[tuple[int, int]]  # file rows of each partition
    offsets: np.ndarray  # global row number of each partition's first row, then N
    samples: list  # futures: each partition's sample rows

    @property
    def n(self) -> int:
        return int(self.offsets[-1])


@dataclass(frozen=True)
class Graph:
    """A graph on disk: ``folder``/edges|nodes/part-j.parquet, partition offsets, sigma and the cells."""

    folder: Path
    offsets: np.ndarray
    sigma: float
    cells: Cells
    exact: bool

    @property
    def parts(self) -> int:
        return len(self.offsets) - 1

    def edges(self, part: int) -> Path:
        return self.folder / "edges" / part_name(part)

    def nodes(self, part: int) -> Path:
        return self.folder / "nodes" / part_name(part)


def _scan(embeddings: Source, utility: Source | None, rows: tuple[int, int], part: int, fraction: float,
          seed: int) -> tuple[int, np.ndarray]:
    ids, x = embeddings.read(*rows, "embeddings")
    if utility is not None:
        check_aligned(ids, utility.read(*rows, "utilities")[0], part)
    rng = np.random.default_rng([seed, part])
    return len(ids), x[np.sort(rng.choice(len(ids), size=round(len(ids) * fraction), replace=False))]


def scan(tasks: Tasks, embeddings: Source, utility: Source | None, partition_rows: int, nlist: int, seed: int,
         span: tuple[float, float]) -> Scan:
    """Read every partition once: checks (finite, aligned), row counts and a sample to train ``nlist`` cells on."""
    ranges = embeddings.partitions(partition_rows)
    rows = max(embeddings.rows, 1)
    fraction = sample_size(rows, nlist, embeddings.width) / rows
    futures = [tasks.submit("scan", part, _scan, embeddings, utility, r, part, fraction, seed)
               for part, r in enumerate(ranges)]
    tasks.wait("reading embeddings", futures, *span)
    counts = tasks.gather([tasks.submit("count", part, getitem, f, 0) for part, f in enumerate(futures)])
    kept = [part for part, count in enumerate(counts) if count]  # e.g. a range of test rows only
    samples = [tasks.submit("sample", part, getitem, futures[part], 1) for part in kept]
    offsets = np.concatenate([[0], np.cumsum([counts[part] for part in kept])]).astype(np.int64)
    return Scan([ranges[part] for part in kept], offsets, samples)


def _train(nlist: int, seed: int, *samples) -> Cells:
    return train_cells(np.concatenate(samples), nlist, seed)


def shard_groups(sizes: list[int], shard_rows: int) -> list[list[int]]:
    """Consecutive partitions packed into shards of at most ``shard_rows`` rows (a partition alone may be more);
    never one shard for several partitions, so no index holds all embeddings."""
    groups, rows = [[]], 0
    for part, size in enumerate(sizes):
        if groups[-1] and rows + size > shard_rows:
            groups.append([])
            rows = 0
        groups[-1].append(part)
        rows += size
    if len(groups) == 1 and len(sizes) > 1:
        groups = [groups[0][:len(sizes) // 2], groups[0][len(sizes) // 2:]]
    return groups


def _index(embeddings: Source, rows: tuple[int, int], offset: int, cells: Cells, nprobe: int, exact: bool,
           shard: Path, nodes: Path) -> np.ndarray | None:
    """Write the partition's index and nodes; return its queries' probed cells (IVF) or None (exact)."""
    ids, x = embeddings.read(*rows, "embeddings")
    probes = cells.probe(x, nprobe)
    write_parquet(pa.table({"sample_id": pa.array(ids, pa.int64()), "cell": pa.array(probes[:, 0], pa.int32())}),
                  nodes)
    if exact:
        index = faiss.IndexFlatL2(x.shape[1])
        index.add(x)
    else:
        from faiss.contrib.ivf_tools import add_preassigned

        quantizer = faiss.IndexFlatL2(x.shape[1])
        quantizer.add(cells.fine)
        index = faiss.IndexIVFFlat(quantizer, x.shape[1], cells.nlist)
        home, ids = np.ascontiguousarray(probes[:, 0]), offset + np.arange(len(x), dtype=np.int64)
        add_preassigned(index, x, home, ids=ids)  # both held here: faiss keeps only raw pointers during the call
    write_atomic(shard, lambda tmp: faiss.write_index(index, str(tmp)))
    return None if exact else probes


def _done(*_) -> None:
    """A dependency without the data: depends on a task, returns nothing."""


def _shard(parts: list[Path], out: Path, *after) -> None:
    """One shard from its partitions' indexes (their lists appended in order; flat rows likewise).

    ``after``: the futures of the tasks that write those indexes (only waited for).
    """
    index = faiss.read_index(str(parts[0]))
    for path in parts[1:]:
        index.merge_from(faiss.read_index(str(path)), 0)
    write_atomic(out, lambda tmp: faiss.write_index(index, str(tmp)))


def _merge(best_d, best_i, d, i, keep: int):
    """The ``keep`` nearest of two candidate lists per row (ties by row number, so shard order does not matter)."""
    d = np.where(i >= 0, d, np.inf).astype(np.float32)
    all_d, all_i = np.concatenate([best_d, d], axis=1), np.concatenate([best_i, i], axis=1)
    order = np.lexsort((all_i, all_d), axis=1)[:, :keep]
    return np.take_along_axis(all_d, order, 1), np.take_along_axis(all_i, order, 1)


def _search(embeddings: Source, rows: tuple[int, int], offsets: np.ndarray, part: int, probes: np.ndarray | None,
            shards: list[tuple[Path, int]], k: int, out: Path, *after) -> np.ndarray:
    """Partition ``part``'s k nearest neighbours over all shards (path, first row) -> ``out``; its positive d2, sorted.

    ``after``: the shard tasks (only waited for).
    """
    _, x = embeddings.read(*rows, "embeddings")
    n, keep = len(x), k + 1
    best_d, best_i = np.full((n, keep), np.inf, np.float32), np.full((n, keep), -1, np.int64)
    for shard, first in shards:
        index = faiss.read_index(str(shard))
        if probes is None:
            d, i = index.search(x, min(keep, index.ntotal))
            i = np.where(i >= 0, i + first, -1)
        else:
            from faiss.contrib.ivf_tools import search_preassigned

            index.nprobe = probes.shape[1]
            d, i = search_preassigned(index, x, keep, probes)
        best_d, best_i = _merge(best_d, best_i, d, i, keep)
    rows_ = np.repeat(offsets[part] + np.arange(n), keep).reshape(n, keep)
    drop = best_i == rows_  # the point itself, or else the farthest of the k + 1 (as knn.neighbors)
    drop[~drop.any(axis=1), -1] = True
    kept = ~drop & (best_i >= 0)
    src, dst, d2 = rows_[kept], best_i[kept], np.maximum(best_d[kept], 0)
    owner = np.searchsorted(offsets, dst, "right") - 1
    order = np.argsort(owner, kind="stable")
    src, dst, d2, owner = src[order], dst[order], d2[order], owner[order]
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]]) if len(owner) else np.zeros(0, np.int64)
    bounds = np.r_[starts, len(owner)]
    table = pa.table({"src": pa.array(src, pa.int64()), "dst": pa.array(dst, pa.int64()),
                      "d2": pa.array(d2, pa.float32())})
    buckets = {int(owner[s]): g for g, s in enumerate(starts)}
    table = table.replace_schema_metadata({BUCKETS: json.dumps(buckets)})

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, table.schema) as writer:
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                writer.write_table(table.slice(lo, hi - lo), row_group_size=hi - lo)

    write_atomic(out, write)
    return np.sort(d2[d2 > 0])


def _reverse_bucket(path: Path, part: int) -> pa.Table | None:
    """Edges of ``path`` that end in partition ``part``, reversed; None when there are none."""
    handle = pq.ParquetFile(path)
    group = json.loads(handle.schema_arrow.metadata[BUCKETS]).get(str(part))
    if group is None:
        return None
    table = handle.read_row_group(group)
    return pa.table({"src": table.column("dst"), "dst": table.column("src"), "d2": table.column("d2")})


def _symmetrize(part: int, knn: list[Path], sigma: float, out: Path) -> int:
    """Partition ``part``'s rows of the symmetric graph -> ``out``; returns its number of edges."""
    tables = [pq.read_table(knn[part])] + [t for t in (_reverse_bucket(p, part) for p in knn) if t is not None]
    table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
    src, dst, d2 = (table.column(c).to_numpy() for c in ("src", "dst", "d2"))
    order = np.lexsort((dst, src))
    src, dst, d2 = src[order], dst[order], d2[order]
    first = np.r_[True, (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])] if len(src) else np.zeros(0, bool)
    starts = np.flatnonzero(first)
    d2 = np.minimum.reduceat(d2, starts) if len(starts) else d2
    sim = np.exp(-d2.astype(np.float64) / sigma)
    nonzero = sim > 0  # as knn_graph's eliminate_zeros
    write_parquet(pa.table({"src": pa.array(src[starts][nonzero], pa.int64()),
                            "dst": pa.array(dst[starts][nonzero], pa.int64()),
                            "sim": pa.array(sim[nonzero], pa.float32())}), out)
    return int(nonzero.sum())


def _sigma(tasks: Tasks, positive: list) -> float:
    """kernel_scale's median of the positive squared distances, exactly, without gathering them."""
    count = sum(tasks.gather([tasks.submit("count-d2", part, len, f) for part, f in enumerate(positive)]))
    if count == 0:
        return kernel_scale(np.zeros(0))
    middle = [kth_largest(tasks.client, positive, r) for r in sorted({(count + 1) // 2, count // 2 + 1})]
    return kernel_scale(np.array(middle, np.float32))


def build_graph(tasks: Tasks, embeddings: Source, found: Scan, folder: Path, k: int, nlist: int, nprobe: int,
                shard_rows: int, seed: int, spans: list[tuple[float, float]], exact_max: int = EXACT_MAX) -> Graph:
    """Stages 2-6 above; ``spans``: the progress fractions of shards, search, scale and symmetrize."""
    n, parts = found.n, len(found.ranges)
    k = min(k, n - 1)
    exact = n <= exact_max
    cells = tasks.submit("cells", 0, _train, nlist, seed, *found.samples)
    indexes = [folder / "index" / part_name(j, ".faiss") for j in range(parts)]
    probes = [tasks.submit("index", j, _index, embeddings, found.ranges[j], int(found.offsets[j]), cells, nprobe,
                           exact, indexes[j], folder / "nodes" / part_name(j)) for j in range(parts)]
    groups = shard_groups(np.diff(found.offsets).tolist(), shard_rows)
    shards = [(folder / "shards" / part_name(g, ".faiss"), int(found.offsets[group[0]])) for g, group in
              enumerate(groups)]
    written = [tasks.submit("indexed", j, _done, p) for j, p in enumerate(probes)]  # small: runs where probes are
    made = [tasks.submit("shard", g, _shard, [indexes[j] for j in group], shards[g][0],
                         *[written[j] for j in group]) for g, group in enumerate(groups)]
    tasks.wait("cells and shards", probes + made, *spans[0])
    knn = [folder / "knn" / part_name(j) for j in range(parts)]
    positive = [tasks.submit("knn-search", j, _search, embeddings, found.ranges[j], found.offsets, j, probes[j],
                             shards, k, knn[j], *made) for j in range(parts)]
    tasks.wait("k-NN search", positive, *spans[1])
    del probes
    tasks.note("kernel scale", spans[2][0])
    sigma = _sigma(tasks, positive)
    del positive
    edges = [tasks.submit("symmetrize", j, _symmetrize, j, knn, sigma, folder / "edges" / part_name(j))
             for j in range(parts)]
    tasks.wait("symmetric graph", edges, *spans[3])
    return Graph(folder, found.offsets, sigma, cells.result(), exact)
