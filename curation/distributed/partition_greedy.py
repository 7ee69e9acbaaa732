"""Multi-round partition greedy for the points bounding left undecided (Böther et al. 2025).

Each round cuts the m remaining candidates into P = ceil(m / max_candidates) partitions; each runs
greedy (pairwise.greedy) on its candidates, from their gains given the points bounding selected, and
keeps its share (by size) of the round's target; the next round works on the winners. The target is
the open budget k' once the candidates fit one partition or number at most (1 + slack) k' (the last
round); before that it is max((1 + slack) k', ceil(P/2) * max_candidates), so the partitions halve
each round. No task holds more than one partition's candidates (about ``max_candidates``) and their
edges.

Two departures from docs/papers.md, for quality (measured in docs/distributed.md):

* partitions are groups of neighbouring cells (cells.group_cells), not random: a random cut keeps only
  1/P of each point's edges inside its partition, so each greedy sees almost none of the redundancy it
  is meant to avoid (``partitioning="random"`` gives the paper's cut);
* with several partitions, each picks its share in ``stages`` synchronized steps and sends the
  similarities of its new picks to their neighbours in the other partitions after each, whose gains
  drop before the next step (``stages=1``: the paper's independent greedy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from operator import getitem
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from curation.distributed.blocks import Block, exchange
from curation.distributed.cells import Cells, apportion, group_cells
from curation.distributed.cluster import Tasks
from curation.distributed.files import part_name, write_npz
from curation.selection.pairwise import gains, greedy

PARTITIONINGS = ("cells", "random")


def round_plan(candidates: int, open_slots: int, max_candidates: int, slack: float) -> tuple[int, int, bool]:
    """(partitions, candidates to keep, final?) for one round."""
    parts = math.ceil(candidates / max_candidates)
    floor = min(candidates, math.ceil((1 + slack) * open_slots))
    if parts == 1 or candidates <= floor:
        return parts, open_slots, True
    return parts, max(floor, math.ceil(parts / 2) * max_candidates), False


def schedule(candidates: int, open_slots: int, max_candidates: int, slack: float) -> list[tuple[int, int, bool]]:
    """Every round's plan, in order."""
    rounds = [round_plan(candidates, open_slots, max_candidates, slack)]
    while not rounds[-1][2]:
        rounds.append(round_plan(rounds[-1][1], open_slots, max_candidates, slack))
    return rounds


def random_groups(ids: np.ndarray, seed: int, round_: int, parts: int) -> np.ndarray:
    """A seeded hash (splitmix64) of global row numbers, modulo ``parts``."""
    z = ids.astype(np.uint64) + np.uint64((seed * 1_000_003 + round_) * 0x9E3779B97F4A7C15 % 2**64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return ((z ^ (z >> np.uint64(31))) % np.uint64(parts)).astype(np.int64)


@dataclass(frozen=True)
class Cut:
    """How one round cuts candidates into partitions: by cell group, or by a seeded hash."""

    parts: int
    groups: np.ndarray | None  # group of each cell (cells partitioning)
    seed: int
    round: int

    def of_rows(self, block: Block) -> np.ndarray:
        if self.groups is None:
            return random_groups(block.offset + np.arange(block.n), self.seed, self.round, self.parts)
        return self.groups[block.cells]

    def of_halo(self, block: Block) -> np.ndarray:
        if self.groups is None:
            return random_groups(block.halo, self.seed, self.round, self.parts)
        return self.groups[block.halo_cells]


def _base(block: Block, alpha: float, beta: float, *halo) -> np.ndarray:
    """Every row's gain given the points bounding selected."""
    return gains(block.graph, block.utility, np.concatenate(halo), alpha, beta)


def _undecided(state: np.ndarray) -> np.ndarray:
    return state == 0


def _selected(state: np.ndarray) -> np.ndarray:
    return state > 0


def _cell_counts(block: Block, alive: np.ndarray, nlist: int) -> np.ndarray:
    return np.bincount(block.cells[alive], minlength=nlist)


def _piece_path(folder: Path, r: int, part: int, block: int) -> Path:
    return folder / f"round-{r}" / part_name(part, "") / part_name(block, ".npz")


def _split(block: Block, alive: np.ndarray, base: np.ndarray, cut: Cut, folder: Path, r: int, *halo) -> np.ndarray:
    """Write one piece per partition (its candidates among this block's rows, their gains, and their edges to
    candidates anywhere: out-degree, target, similarity, partition of the target); return the pieces' sizes.

    On disk, not in memory: a round's pieces are a copy of every candidate's edges.
    """
    halo_alive, halo_part, halo_rows = np.concatenate(halo), cut.of_halo(block).astype(np.int32), block.halo
    rows = np.flatnonzero(alive)
    row_part = cut.of_rows(block)[rows]
    edges = block.graph[rows].tocoo()
    keep = halo_alive[edges.col]  # only edges to points still candidates
    src, dst, sim = edges.row[keep], edges.col[keep], edges.data[keep]
    order = np.argsort(row_part[src], kind="stable")  # by partition, then row
    cuts = np.searchsorted(row_part[src][order], np.arange(cut.parts + 1))
    degree = np.bincount(src, minlength=len(rows)).astype(np.int32)
    for part in range(cut.parts):
        own, entries = np.flatnonzero(row_part == part), order[cuts[part] : cuts[part + 1]]
        piece = {
            "members": rows[own] + block.offset,
            "base": base[rows[own]],
            "degree": degree[own],
            "dst": halo_rows[dst[entries]],
            "sim": sim[entries],
            "dst_part": halo_part[dst[entries]],
        }
        write_npz(piece, _piece_path(folder, r, part, block.part))
    return np.bincount(row_part, minlength=cut.parts)


@dataclass(frozen=True)
class Part:
    """One partition's greedy between stages: its candidates, the edges among them and to the other partitions."""

    members: np.ndarray  # global row numbers, ascending
    base: np.ndarray  # gains given the points bounding selected
    inside: sp.csr_matrix  # among members (local numbers)
    out_src: np.ndarray  # edges to other partitions' candidates: source (local), target (global), similarity, partition
    out_dst: np.ndarray
    out_sim: np.ndarray
    out_part: np.ndarray
    penalty: np.ndarray  # beta * similarity to the other partitions' picks so far
    selected: np.ndarray
    fresh: np.ndarray  # picked in the last stage (local numbers)


def _start(part: int, paths: list[Path], *after) -> Part:
    """A partition's greedy from its pieces (``after``: the tasks that write them, only waited for)."""
    pieces = [np.load(path) for path in paths]
    members, base, degree, dst, sim, dst_part = (
        np.concatenate([p[name] for p in pieces]) for name in ("members", "base", "degree", "dst", "sim", "dst_part")
    )
    m, inside = len(members), dst_part == part
    src = np.repeat(np.arange(m, dtype=np.int32), degree)
    graph = sp.csr_matrix((sim[inside], (src[inside], np.searchsorted(members, dst[inside]))), shape=(m, m))
    out = ~inside
    return Part(
        members,
        base,
        graph,
        src[out],
        dst[out],
        sim[out],
        dst_part[out],
        np.zeros(m),
        np.zeros(m, bool),
        np.zeros(0, np.int64),
    )


def _receive(part: Part, beta: float, *incoming) -> Part:
    """Lower the gains of members next to the other partitions' last picks."""
    penalty = part.penalty.copy()
    for dst, sim in incoming:
        np.add.at(penalty, np.searchsorted(part.members, dst), beta * sim.astype(np.float64))
    return replace(part, penalty=penalty)


def _stage(part: Part, quota: int, beta: float, seed: int) -> Part:
    """``quota`` more greedy picks (pairwise.greedy; the members picked before cannot be chosen again)."""
    fresh = np.zeros(0, np.int64)
    if quota:
        current = gains(part.inside, part.base, part.selected, 1.0, beta) - part.penalty
        current[part.selected] = -np.inf
        fresh = greedy(part.inside, current, quota, 1.0, beta, seed)[0]
    selected = part.selected.copy()
    selected[fresh] = True
    return replace(part, selected=selected, fresh=fresh)


def _messages(part: Part, parts: int) -> tuple:
    """For each partition: its candidates next to this stage's picks, and their similarities to them."""
    picked = np.zeros(len(part.members), bool)
    picked[part.fresh] = True
    sent = picked[part.out_src]
    return tuple(
        (part.out_dst[sent & (part.out_part == q)], part.out_sim[sent & (part.out_part == q)]) for q in range(parts)
    )


def _winners(part: Part, offsets: np.ndarray) -> tuple[np.ndarray, ...]:
    """The partition's picks as local rows of each owning block."""
    picked = part.members[part.selected]
    cut = np.searchsorted(picked, offsets)
    return tuple(picked[a:b] - first for a, b, first in zip(cut[:-1], cut[1:], offsets[:-1]))


def _survivors(n: int, *picks) -> np.ndarray:
    alive = np.zeros(n, bool)
    alive[np.concatenate(picks)] = True
    return alive


def _seed(seed: int, *path: int) -> int:
    return int(np.random.default_rng([seed, *path]).integers(2**31))


def _round(
    tasks: Tasks,
    r: int,
    split: list,
    folder: Path,
    sizes: np.ndarray,
    keep: int,
    stages: int,
    beta: float,
    seed: int,
    offsets: np.ndarray,
) -> list:
    """One round's greedy; the winners (futures) per partition.

    Each partition picks its share of ``keep`` (in proportion to its candidates). With several
    partitions it does so in ``stages`` synchronized steps: after each, every partition sends the
    similarities of its new picks to their neighbours in other partitions, whose gains drop by them
    before the next step, so redundancy across partitions is seen (except among one step's picks).
    """
    parts = len(sizes)
    steps = 1 if parts == 1 else stages
    quotas = [apportion(int(q), np.ones(steps, np.int64)) for q in apportion(keep, sizes)]
    state = [
        tasks.submit(
            f"greedy{r}-start", p, _start, p, [_piece_path(folder, r, p, j) for j in range(len(split))], *split
        )
        for p in range(parts)
    ]
    for step in range(steps):
        state = [
            tasks.submit(f"greedy{r}-stage{step}", p, _stage, s, int(quotas[p][step]), beta, _seed(seed, r, p, step))
            for p, s in enumerate(state)
        ]
        if step + 1 < steps:
            mail = [tasks.submit(f"greedy{r}-send{step}", p, _messages, s, parts) for p, s in enumerate(state)]
            state = [
                tasks.submit(
                    f"greedy{r}-receive{step}",
                    p,
                    _receive,
                    state[p],
                    beta,
                    *[
                        tasks.submit(f"greedy{r}-mail{step}", f"{q}-{p}", getitem, m, p)
                        for q, m in enumerate(mail)
                        if q != p
                    ],
                )
                for p in range(parts)
            ]
    return [tasks.submit(f"greedy{r}", p, _winners, s, offsets) for p, s in enumerate(state)]


def partition_greedy(
    tasks: Tasks,
    blocks: list,
    offsets: np.ndarray,
    states: list,
    cells: Cells,
    folder: Path,
    open_slots: int,
    alpha: float,
    beta: float,
    seed: int,
    max_candidates: int,
    slack: float,
    partitioning: str,
    stages: int,
    span: tuple[float, float],
) -> tuple[list, list[dict]]:
    """The winners of the final round as a mask per partition (futures), and one record per round."""
    selected = exchange(
        tasks, "base", blocks, [tasks.submit("selected", j, _selected, s) for j, s in enumerate(states)]
    )
    base = [tasks.submit("base", j, _base, blocks[j], alpha, beta, *selected[j]) for j in range(len(blocks))]
    alive = [tasks.submit("undecided", j, _undecided, s) for j, s in enumerate(states)]
    counts = np.sum(
        tasks.gather(
            [
                tasks.submit("cell-counts0", j, _cell_counts, blocks[j], alive[j], cells.nlist)
                for j in range(len(blocks))
            ]
        ),
        axis=0,
    )
    plan = schedule(int(counts.sum()), open_slots, max_candidates, slack)
    records = []
    for r, (parts, keep, final) in enumerate(plan, 1):
        groups = group_cells(cells.centroids, counts, parts) if partitioning == "cells" else None
        cut = Cut(parts, groups, seed, r)
        halo_alive = exchange(tasks, f"alive{r}", blocks, alive)
        split = [
            tasks.submit(f"split{r}", j, _split, blocks[j], alive[j], base[j], cut, folder, r, *halo_alive[j])
            for j in range(len(blocks))
        ]
        group_sizes = np.sum(tasks.gather(split), axis=0)
        winners = _round(tasks, r, split, folder, group_sizes, keep, stages, beta, seed, offsets)
        start = span[0] + (span[1] - span[0]) * (r - 1) / len(plan)
        tasks.wait(
            f"greedy round {r}/{len(plan)} ({parts} partitions)",
            winners,
            start,
            start + (span[1] - span[0]) / len(plan),
        )
        alive = [
            tasks.submit(
                f"survivors{r}",
                j,
                _survivors,
                int(offsets[j + 1] - offsets[j]),
                *[tasks.submit(f"won{r}", f"{p}-{j}", getitem, w, j) for p, w in enumerate(winners)],
            )
            for j in range(len(blocks))
        ]
        records.append(
            {
                "round": r,
                "candidates": int(group_sizes.sum()),
                "partitions": parts,
                "largest_partition": int(group_sizes.max()),
                "kept": int(keep),
                "final": final,
            }
        )
        if not final:
            counts = np.sum(
                tasks.gather(
                    [
                        tasks.submit(f"cell-counts{r}", j, _cell_counts, blocks[j], alive[j], cells.nlist)
                        for j in range(len(blocks))
                    ]
                ),
                axis=0,
            )
    return alive, records
