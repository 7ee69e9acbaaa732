"""One partition's rows of the graph, and the exchange of values with its neighbours.

A ``Block`` holds its rows as CSR over its *halo*: the distinct neighbours of its rows, as sorted
global row numbers. The pure functions of pairwise.py (gains, gain_bounds, density) then work on it
unchanged, given per-point values (decisions, membership) for the halo only. Those come from the
partitions that own them: because the graph is symmetric, the rows of partition q in partition j's
halo are exactly q's rows with an edge into j (``exports[j]`` of q), in the same order. An exchange is
one task per partition (cut its values into one piece per partition) and one per piece; no task ever
sees more than its own rows' and its halo's values.

A worker keeps only a block's per-row arrays (ids, cells, utility: 20 bytes a row) between tasks.
The edges (the CSR, the halo, its cells, the exports: most of a block) lie in ``.npy`` files next to
the graph and are mapped into memory by the task that uses them, so a worker holds one block's edges
at a time, not those of every partition it owns (measured at 10M points: docs/distributed.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import getitem
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import scipy.sparse as sp

from curation.distributed.cluster import Tasks
from curation.distributed.files import part_name, write_npy
from curation.distributed.graph import Graph
from curation.distributed.source import Source, check_aligned
from curation.selection.pairwise import density


@dataclass(frozen=True)
class Block:
    """Rows offset..offset+n-1: sample ids, cells, utility in memory; the (n x halo) similarities on disk."""

    part: int
    offset: int
    sample_ids: np.ndarray
    cells: np.ndarray
    utility: np.ndarray
    folder: Path  # data, indices, indptr (CSR), halo, halo_cells, exports (.npy)
    halo_size: int
    nnz: int
    export_cuts: np.ndarray  # exports[j] = the exports file's rows export_cuts[j]:export_cuts[j + 1]

    @property
    def n(self) -> int:
        return len(self.sample_ids)

    @property
    def graph(self) -> sp.csr_matrix:
        arrays = (self._read(name) for name in ("data", "indices", "indptr"))
        return sp.csr_matrix(tuple(arrays), shape=(self.n, self.halo_size), copy=False)

    @property
    def halo(self) -> np.ndarray:
        return self._read("halo")

    @property
    def halo_cells(self) -> np.ndarray:
        return self._read("halo_cells")

    @property
    def exports(self) -> tuple[np.ndarray, ...]:
        rows = self._read("exports")
        return tuple(rows[a:b] for a, b in zip(self.export_cuts[:-1], self.export_cuts[1:]))

    def _read(self, name: str) -> np.ndarray:
        return np.load(self.folder / f"{name}.npy", mmap_mode="r")


def load_block(graph: Graph, part: int, utility: Source | None, rows: tuple[int, int]) -> Block:
    """Read partition ``part``'s edges and nodes; utility = density (mean similarity) or the given column."""
    offsets = graph.offsets
    offset, n = int(offsets[part]), int(offsets[part + 1] - offsets[part])
    edges, nodes = pq.read_table(graph.edges(part)), pq.read_table(graph.nodes(part))
    src, dst = edges.column("src").to_numpy() - offset, edges.column("dst").to_numpy()
    halo, columns = np.unique(dst, return_inverse=True)
    matrix = sp.csr_matrix((edges.column("sim").to_numpy(), (src, columns.astype(np.int32))), shape=(n, len(halo)))
    del edges, columns
    ids = nodes.column("sample_id").to_numpy()
    if utility is None:
        values = density(matrix)
    else:
        other, values = utility.read(*rows, "utilities")
        check_aligned(ids, other, part)
    owner = np.searchsorted(offsets, dst, "right") - 1
    pairs = np.unique(owner * n + src)  # (partition of the neighbour, own row), sorted
    cuts = np.searchsorted(pairs // n, np.arange(len(offsets)))
    folder = graph.folder / "blocks" / part_name(part, "")
    for name, array in (
        ("data", matrix.data),
        ("indices", matrix.indices),
        ("indptr", matrix.indptr),
        ("halo", halo),
        ("exports", (pairs % n).astype(np.int32)),
    ):
        write_npy(array, folder / f"{name}.npy")
    return Block(part, offset, ids, nodes.column("cell").to_numpy(), values, folder, len(halo), int(matrix.nnz), cuts)


def _cut(block: Block, values: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(values[rows] for rows in block.exports)


def exchange(tasks: Tasks, stage: str, blocks: list, values: list) -> list[list]:
    """For each partition j, the futures of its halo's values, in halo order (concatenate them)."""
    cuts = [tasks.submit(f"{stage}-cut", q, _cut, blocks[q], values[q]) for q in range(len(blocks))]
    return [
        [tasks.submit(f"{stage}-piece", f"{q}-{j}", getitem, cuts[q], j) for q in range(len(blocks))]
        for j in range(len(blocks))
    ]


def _with_halo_cells(block: Block, *pieces) -> Block:
    write_npy(np.concatenate(pieces), block.folder / "halo_cells.npy")
    return block


def load_blocks(
    tasks: Tasks, graph: Graph, utility: Source | None, ranges: list[tuple[int, int]], span: tuple[float, float]
) -> list:
    """Every partition's block, with the cells of its halo (futures, one per partition)."""
    blocks = [tasks.submit("load-block", j, load_block, graph, j, utility, ranges[j]) for j in range(graph.parts)]
    tasks.wait("loading the graph", blocks, *span)
    cells = [tasks.submit("cells-of", j, _attribute, b, "cells") for j, b in enumerate(blocks)]
    pieces = exchange(tasks, "halo-cells", blocks, cells)
    return [tasks.submit("block", j, _with_halo_cells, blocks[j], *pieces[j]) for j in range(graph.parts)]


def _attribute(block: Block, name: str):
    return getattr(block, name)
