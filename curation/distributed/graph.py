"""The k-NN similarity graph, built partition by partition and stored as partitioned Parquet edge lists.

The same graph as ``knn.knn_graph`` (similarity exp(-d2/sigma), sigma the median positive squared
distance to the k nearest neighbours, an edge when either end is among the other's k nearest),
built without a process ever holding more than one partition's embeddings plus one index shard:

1. ``scan``: each partition's embeddings (and utilities) are read and checked; a seeded sample is kept.
2. cells: a two-level k-means of the sample (cells.py), sent to every task.
3. index: each partition puts its points into their nearest cell and writes its own faiss index (IVF
   lists; exact ``IndexFlatL2`` up to ``exact_max`` points in all) and ``nodes/`` (sample_id, cell);
   consecutive partitions' indexes are merged into shards of up to ``shard_rows`` embeddings.
4. search: partition i loads the shards one after another and keeps a running top-(k+1) for its
   queries (each probes its ``nprobe`` nearest cells, worked out once); its directed edges go to
   ``knn/``, one row group per partition of the neighbour. Unless given, ``nprobe`` is calibrated
   first: the fewest of 8, 16, ..., 128 whose recall of the exact k nearest neighbours of 200 sample
   points reaches ``recall`` (0.99 by default: at 0.96, greedy's objective on MNIST-1D fell 5%).
5. scale: sigma, exactly, from the positive distances that stay on the workers (order.py).
6. symmetrize: partition j joins its edges with the reverse of every edge into j (row group j of
   every ``knn/`` file) -> ``edges/part-j.parquet`` (src, dst, sim float32; global row numbers, sorted).

Row numbers are global: partition j holds rows offsets[j]..offsets[j+1]-1 in file order. Fewer
shards cost less per query (each shard is one more short list scan per probe): a 1M-point search
ran 1.75x slower in 4 shards and 2.3x in 20 than in one index.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from operator import getitem
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.distributed.cells import Cells, sample_size, train_cells
from curation.distributed.cluster import Tasks
from curation.distributed.files import part_name, write_parquet
from curation.distributed.order import kth_largest
from curation.distributed.source import Source, check_aligned
from curation.files import write_atomic
from curation.selection.knn import EXACT_MAX, kernel_scale

BUCKETS = b"curation.buckets"  # knn/ file metadata: partition of the neighbour -> row group
NPROBES = (8, 16, 32, 64, 128)  # the probe counts calibration tries, fewest first
CALIBRATION_QUERIES = 200


@dataclass(frozen=True)
class Scan:
    """What the first read of the input found: rows per partition and the cells' training sample."""

    ranges: list[tuple[int, int]]  # file rows of each partition
    offsets: np.ndarray  # global row number of each partition's first row, then N
    samples: list  # futures: each partition's sample (its rows, their embeddings)

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
    nprobe: int | None  # cells each query scanned (None: exact search)
    recall: float  # k-NN recall measured on sample queries (1.0 when exact)

    @property
    def parts(self) -> int:
        return len(self.offsets) - 1

    def edges(self, part: int) -> Path:
        return self.folder / "edges" / part_name(part)

    def nodes(self, part: int) -> Path:
        return self.folder / "nodes" / part_name(part)


def _scan(
    embeddings: Source, utility: Source | None, rows: tuple[int, int], part: int, fraction: float, seed: int
) -> tuple[int, np.ndarray]:
    ids, x = embeddings.read(*rows, "embeddings")
    if utility is not None:
        check_aligned(ids, utility.read(*rows, "utilities")[0], part)
    picked = np.sort(
        np.random.default_rng([seed, part]).choice(len(ids), size=round(len(ids) * fraction), replace=False)
    )
    return len(ids), (picked, x[picked])


def scan(
    tasks: Tasks,
    embeddings: Source,
    utility: Source | None,
    partition_rows: int,
    nlist: int,
    seed: int,
    span: tuple[float, float],
) -> Scan:
    """Read every partition once: checks (finite, aligned), row counts and a sample to train ``nlist`` cells on."""
    ranges = embeddings.partitions(partition_rows)
    rows = max(embeddings.rows, 1)
    fraction = sample_size(rows, nlist, embeddings.width) / rows
    futures = [
        tasks.submit("scan", part, _scan, embeddings, utility, r, part, fraction, seed) for part, r in enumerate(ranges)
    ]
    tasks.wait("reading embeddings", futures, *span)
    counts = tasks.gather([tasks.submit("count", part, getitem, f, 0) for part, f in enumerate(futures)])
    kept = [part for part, count in enumerate(counts) if count]  # e.g. a range of test rows only
    samples = [tasks.submit("sample", part, getitem, futures[part], 1) for part in kept]
    offsets = np.concatenate([[0], np.cumsum([counts[part] for part in kept])]).astype(np.int64)
    return Scan([ranges[part] for part in kept], offsets, samples)


def _train(nlist: int, seed: int, *samples) -> Cells:
    return train_cells(np.concatenate([x for _, x in samples]), nlist, seed)


def _queries(offsets: np.ndarray, count: int, seed: int, *samples) -> tuple[np.ndarray, np.ndarray]:
    """``count`` sample points for calibrating the search: global row numbers and embeddings."""
    rows = np.concatenate([first + local for first, (local, _) in zip(offsets, samples)])
    x = np.concatenate([x for _, x in samples])
    pick = np.sort(np.random.default_rng(seed).choice(len(rows), min(count, len(rows)), replace=False))
    return rows[pick], x[pick]


def shard_groups(sizes: list[int], shard_rows: int) -> list[list[int]]:
    """Consecutive partitions packed into shards of at most ``shard_rows`` rows (a partition alone may be more).

    Two partitions or more always make two shards or more: no index holds all embeddings.
    """
    groups, rows = [[]], 0
    for part, size in enumerate(sizes):
        if groups[-1] and rows + size > shard_rows:
            groups.append([])
            rows = 0
        groups[-1].append(part)
        rows += size
    if len(groups) == 1 and len(sizes) > 1:
        groups = [groups[0][: len(sizes) // 2], groups[0][len(sizes) // 2 :]]
    return groups


def _index(
    embeddings: Source, rows: tuple[int, int], offset: int, cells: Cells, exact: bool, out: Path, nodes: Path
) -> None:
    """Write the partition's index (its points in their nearest cells, or flat) and its nodes (sample_id, cell)."""
    ids, x = embeddings.read(*rows, "embeddings")
    home = np.ascontiguousarray(cells.probe(x, 1)[:, 0])
    write_parquet(pa.table({"sample_id": pa.array(ids, pa.int64()), "cell": pa.array(home, pa.int32())}), nodes)
    if exact:
        index = faiss.IndexFlatL2(x.shape[1])
        index.add(x)
    else:
        from faiss.contrib.ivf_tools import add_preassigned

        quantizer = faiss.IndexFlatL2(x.shape[1])
        quantizer.add(cells.centroids)
        index = faiss.IndexIVFFlat(quantizer, x.shape[1], cells.nlist)
        ids = offset + np.arange(len(x), dtype=np.int64)
        add_preassigned(index, x, home, ids=ids)  # both held here: faiss keeps only raw pointers during the call
    write_atomic(out, lambda tmp: faiss.write_index(index, str(tmp)))


def _shard(parts: list[Path], out: Path, *after) -> None:
    """One shard from its partitions' indexes (their lists appended in order; flat rows likewise).

    ``after``: the tasks that write those indexes (only waited for).
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


def _nearest(x: np.ndarray, shards: list[tuple[Path, int]], keep: int, probes: np.ndarray | None):
    """The ``keep`` nearest rows of ``x`` over the shards (path, first row), loaded one after another."""
    best_d, best_i = np.full((len(x), keep), np.inf, np.float32), np.full((len(x), keep), -1, np.int64)
    for shard, first in shards:
        index = faiss.read_index(str(shard))
        if probes is None:
            d, i = index.search(x, min(keep, index.ntotal))
            i = np.where(i >= 0, i + first, -1)
        else:
            from faiss.contrib.ivf_tools import search_preassigned

            index.nprobe = probes.shape[1]
            d, i = search_preassigned(index, x, keep, np.ascontiguousarray(probes))
        best_d, best_i = _merge(best_d, best_i, d, i, keep)
    return best_d, best_i


def _without_self(rows: np.ndarray, d: np.ndarray, i: np.ndarray):
    """(src, dst, d2) edges from the k + 1 nearest: the point itself dropped, or else the farthest (as
    knn.neighbors)."""
    me = np.repeat(rows, i.shape[1]).reshape(i.shape)
    drop = i == me
    drop[~drop.any(axis=1), -1] = True
    kept = ~drop & (i >= 0)
    return me[kept], i[kept], np.maximum(d[kept], 0)


def _exact(embeddings: Source, rows: tuple[int, int], first: int, x: np.ndarray, keep: int):
    """The ``keep`` nearest of the rows ``x`` among one partition's embeddings, exactly."""
    _, data = embeddings.read(*rows, "embeddings")
    index = faiss.IndexFlatL2(data.shape[1])
    index.add(data)
    d, i = index.search(x, min(keep, index.ntotal))
    return d, np.where(i >= 0, i + first, -1)


def _probed(shard: tuple[Path, int], x: np.ndarray, probes: np.ndarray, keep: int, nprobes: list[int]) -> list:
    """The ``keep`` nearest of ``x`` in one (IVF) shard when probing the first n cells, for each n of ``nprobes``."""
    from faiss.contrib.ivf_tools import search_preassigned

    index = faiss.read_index(str(shard[0]))
    found = []
    for n in nprobes:
        index.nprobe = n
        d, i = search_preassigned(index, x, keep, np.ascontiguousarray(probes[:, :n]))
        found.append((np.where(i >= 0, d, np.inf).astype(np.float32), i))
    return found


def _calibrate(
    tasks: Tasks, embeddings: Source, found: Scan, shards: list, cells: Cells, keep: int, recall: float, seed: int
) -> tuple[int, float]:
    """The fewest probed cells (of ``NPROBES``) whose k-NN recall on sample queries reaches ``recall``; and that recall.

    The exact neighbours of ``CALIBRATION_QUERIES`` sample points come from a flat search of each
    partition; the approximate ones from the shards, as the search proper runs.
    """
    rows, x = tasks.submit("queries", 0, _queries, found.offsets, CALIBRATION_QUERIES, seed, *found.samples).result()
    nprobes = [n for n in NPROBES if n < cells.nlist] + [min(max(NPROBES), cells.nlist)]
    probes = cells.probe(x, nprobes[-1])
    truth = (np.full((len(x), keep), np.inf, np.float32), np.full((len(x), keep), -1, np.int64))
    for d, i in tasks.gather(
        [
            tasks.submit("calibrate-exact", j, _exact, embeddings, r, int(found.offsets[j]), x, keep)
            for j, r in enumerate(found.ranges)
        ]
    ):
        truth = _merge(*truth, d, i, keep)
    found_ = [(np.full((len(x), keep), np.inf, np.float32), np.full((len(x), keep), -1, np.int64)) for _ in nprobes]
    for per_shard in tasks.gather(
        [tasks.submit("calibrate", g, _probed, shard, x, probes, keep, nprobes) for g, shard in enumerate(shards)]
    ):
        found_ = [_merge(*best, d, i, keep) for best, (d, i) in zip(found_, per_shard)]
    true_edges = set(zip(*_without_self(rows, *truth)[:2]))
    for n, (d, i) in zip(nprobes, found_):
        hit = len(true_edges & set(zip(*_without_self(rows, d, i)[:2]))) / max(len(true_edges), 1)
        if hit >= recall or n == nprobes[-1]:
            return n, hit


def _search(
    embeddings: Source,
    rows: tuple[int, int],
    offsets: np.ndarray,
    part: int,
    cells: Cells,
    nprobe: int | None,
    shards: list[tuple[Path, int]],
    k: int,
    out: Path,
) -> np.ndarray:
    """Partition ``part``'s k nearest neighbours over all shards (path, first row) -> ``out``; its positive d2, sorted.

    Each query scans its ``nprobe`` nearest cells in every shard (None: exact, flat shards).
    """
    _, x = embeddings.read(*rows, "embeddings")
    best_d, best_i = _nearest(x, shards, k + 1, None if nprobe is None else cells.probe(x, nprobe))
    src, dst, d2 = _without_self(offsets[part] + np.arange(len(x)), best_d, best_i)
    owner = np.searchsorted(offsets, dst, "right") - 1
    order = np.argsort(owner, kind="stable")
    src, dst, d2, owner = src[order], dst[order], d2[order], owner[order]
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]]) if len(owner) else np.zeros(0, np.int64)
    bounds = np.r_[starts, len(owner)]
    table = pa.table(
        {"src": pa.array(src, pa.int64()), "dst": pa.array(dst, pa.int64()), "d2": pa.array(d2, pa.float32())}
    )
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
    write_parquet(
        pa.table(
            {
                "src": pa.array(src[starts][nonzero], pa.int64()),
                "dst": pa.array(dst[starts][nonzero], pa.int64()),
                "sim": pa.array(sim[nonzero], pa.float32()),
            }
        ),
        out,
    )
    return int(nonzero.sum())


def _sigma(tasks: Tasks, positive: list) -> float:
    """kernel_scale's median of the positive squared distances, exactly, without gathering them."""
    count = sum(tasks.gather([tasks.submit("count-d2", part, len, f) for part, f in enumerate(positive)]))
    if count == 0:
        return kernel_scale(np.zeros(0))
    middle = [kth_largest(tasks.client, positive, r) for r in sorted({(count + 1) // 2, count // 2 + 1})]
    return kernel_scale(np.array(middle, np.float32))


def build_graph(
    tasks: Tasks,
    embeddings: Source,
    found: Scan,
    folder: Path,
    k: int,
    nlist: int,
    nprobe: int | None,
    recall: float,
    shard_rows: int,
    seed: int,
    spans: list[tuple[float, float]],
    exact_max: int = EXACT_MAX,
) -> Graph:
    """Stages 2-6 above; ``nprobe`` None: calibrated to ``recall``; ``spans``: progress of shards, search, scale,
    symmetrize."""
    n, parts = found.n, len(found.ranges)
    k = min(k, n - 1)
    exact = n <= exact_max
    cells = tasks.submit("cells", 0, _train, nlist, seed, *found.samples)
    indexes = [folder / "index" / part_name(j, ".faiss") for j in range(parts)]
    written = [
        tasks.submit(
            "index",
            j,
            _index,
            embeddings,
            found.ranges[j],
            int(found.offsets[j]),
            cells,
            exact,
            indexes[j],
            folder / "nodes" / part_name(j),
        )
        for j in range(parts)
    ]
    groups = shard_groups(np.diff(found.offsets).tolist(), shard_rows)
    shards = [
        (folder / "shards" / part_name(g, ".faiss"), int(found.offsets[group[0]])) for g, group in enumerate(groups)
    ]
    made = [
        tasks.submit("shard", g, _shard, [indexes[j] for j in group], shards[g][0], *[written[j] for j in group])
        for g, group in enumerate(groups)
    ]
    tasks.wait("cells and shards", written + made, *spans[0])
    trained, measured = cells.result(), 1.0
    if not exact and nprobe is None:
        tasks.note("calibrating the search", spans[1][0])
        nprobe, measured = _calibrate(tasks, embeddings, found, shards, trained, k + 1, recall, seed)
    found.samples.clear()  # cells trained, search calibrated: let the workers free the sample
    knn = [folder / "knn" / part_name(j) for j in range(parts)]
    positive = [
        tasks.submit(
            "knn-search",
            j,
            _search,
            embeddings,
            found.ranges[j],
            found.offsets,
            j,
            cells,
            None if exact else nprobe,
            shards,
            k,
            knn[j],
        )
        for j in range(parts)
    ]
    stage = "k-NN search" if exact else f"k-NN search, {nprobe} of {trained.nlist} cells probed"
    tasks.wait(stage, positive, *spans[1])
    tasks.note("kernel scale", spans[2][0])
    sigma = _sigma(tasks, positive)
    del positive  # released on the workers as soon as no future refers to them
    edges = [
        tasks.submit("symmetrize", j, _symmetrize, j, knn, sigma, folder / "edges" / part_name(j)) for j in range(parts)
    ]
    tasks.wait("symmetric graph", edges, *spans[3])
    return Graph(folder, found.offsets, sigma, trained, exact, None if exact else nprobe, measured)
