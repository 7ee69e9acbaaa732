"""One partition's rows of the graph in a worker's memory, and the exchange of values with its neighbours.

A ``Block`` holds its rows as CSR over its *halo*: the distinct neighbours of its rows, as sorted
global row numbers. The pure functions of pairwise.py (gains, gain_bounds, density) then work on it
unchanged, given per-point values (decisions, membership) for the halo only. Those come from the
partitions that own them: because the graph is symmetric, the rows of partition q in partition j's
halo are exactly q's rows with an edge into j (``exports[j]`` of q), in the same order. An exchange is
one task per partition (cut its values into one piece per partition) and one per piece; no task ever
sees more than its own rows' and its halo's values.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from operator import getitem

import numpy as np
import pyarrow.parquet as pq
import scipy.sparse as sp

from curation.distributed.cluster import Tasks
from curation.distributed.graph import Graph
from curation.distributed.source import Source, check_aligned
from curation.selection.pairwise import density


@dataclass(frozen=True)
class Block:
    """Rows offset..offset+n-1: sample ids, cells, utility, CSR (n x halo) similarities, exports."""

    part: int
    offset: int
    sample_ids: np.ndarray
    cells: np.ndarray
    utility: np.ndarray
    graph: sp.csr_matrix
    halo: np.ndarray
    exports: tuple[np.ndarray, ...]
    halo_cells: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.sample_ids)


def load_block(graph: Graph, part: int, utility: Source | None, rows: tuple[int, int]) -> Block:
    """Read partition ``part``'s edges and nodes; utility = density (mean similarity) or the given column."""
    offsets = graph.offsets
    offset, n = int(offsets[part]), int(offsets[part + 1] - offsets[part])
    edges, nodes = pq.read_table(graph.edges(part)), pq.read_table(graph.nodes(part))
    src, dst = edges.column("src").to_numpy() - offset, edges.column("dst").to_numpy()
    halo, columns = np.unique(dst, return_inverse=True)
    matrix = sp.csr_matrix((edges.column("sim").to_numpy(), (src, columns.astype(np.int32))), shape=(n, len(halo)))
    ids = nodes.column("sample_id").to_numpy()
    if utility is None:
        values = density(matrix)
    else:
        other, values = utility.read(*rows, "utilities")
        check_aligned(ids, other, part)
    owner = np.searchsorted(offsets, dst, "right") - 1
    pairs = np.unique(owner * n + src)  # (partition of the neighbour, own row), sorted
    cut = np.searchsorted(pairs // n, np.arange(len(offsets)))
    exports = tuple((pairs[a:b] % n).astype(np.int32) for a, b in zip(cut[:-1], cut[1:]))
    return Block(part, offset, ids, nodes.column("cell").to_numpy(), values, matrix, halo, exports)


def _cut(block: Block, values: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(values[rows] for rows in block.exports)


def exchange(tasks: Tasks, stage: str, blocks: list, values: list) -> list[list]:
    """For each partition j, the futures of its halo's values, in halo order (concatenate them)."""
    cuts = [tasks.submit(f"{stage}-cut", q, _cut, blocks[q], values[q]) for q in range(len(blocks))]
    return [[tasks.submit(f"{stage}-piece", f"{q}-{j}", getitem, cuts[q], j) for q in range(len(blocks))]
            for j in range(len(blocks))]


def _with_halo_cells(block: Block, *pieces) -> Block:
    return replace(block, halo_cells=np.concatenate(pieces))


def load_blocks(tasks: Tasks, graph: Graph, utility: Source | None, ranges: list[tuple[int, int]],
                span: tuple[float, float]) -> list:
    """Every partition's block, with the cells of its halo (futures, one per partition)."""
    blocks = [tasks.submit("load-block", j, load_block, graph, j, utility, ranges[j]) for j in range(graph.parts)]
    tasks.wait("loading the graph", blocks, *span)
    cells = [tasks.submit("cells-of", j, _attribute, b, "cells") for j, b in enumerate(blocks)]
    pieces = exchange(tasks, "halo-cells", blocks, cells)
    return [tasks.submit("block", j, _with_halo_cells, blocks[j], *pieces[j]) for j in range(graph.parts)]


def _attribute(block: Block, name: str):
    return getattr(block, name)
