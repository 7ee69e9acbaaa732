"""Multi-round partition greedy for the points bounding left undecided (Böther et al. 2025).

Each round cuts the m remaining candidates into ceil(m / max_candidates) partitions, runs greedy
(pairwise.greedy) inside each in parallel on the edges among its own candidates, starting from the
gains given the points bounding selected, and keeps each partition's share of the round's target; the
next round works on the winners with fewer partitions. The target is the open budget k' once the
candidates fit one partition or number at most (1 + slack) k' (the final round); before that it is
max((1 + slack) k', ceil(P/2) * max_candidates), so the partitions halve each round. No task holds
more than one partition's candidates (about ``max_candidates``) and their edges.

Partitions are groups of neighbouring cells (cells.group_cells) by default: a random cut, as in the
paper, keeps only 1/P of each point's edges inside its partition, so each greedy sees almost none of
the redundancy it is meant to avoid (measured in docs/distributed.md). ``partitioning="random"``
gives the paper's cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from operator import getitem

import numpy as np
import scipy.sparse as sp

from curation.distributed.blocks import Block, exchange
from curation.distributed.cells import Cells, apportion, group_cells
from curation.distributed.cluster import Tasks
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


def _split(block: Block, alive: np.ndarray, base: np.ndarray, cut: Cut, *halo) -> tuple:
    """One piece per partition: its candidates among this block's rows, their gains and their edges to candidates
    (src, dst, similarity, partition of dst)."""
    halo_alive = np.concatenate(halo)
    rows = np.flatnonzero(alive)
    row_group = cut.of_rows(block)[rows]
    edges = block.graph[rows].tocoo()
    keep = halo_alive[edges.col]
    src, dst, sim = rows[edges.row[keep]] + block.offset, block.halo[edges.col[keep]], edges.data[keep]
    src_group, dst_group = row_group[edges.row[keep]], cut.of_halo(block)[edges.col[keep]]
    pieces = []
    for part in range(cut.parts):
        own, out = row_group == part, src_group == part
        pieces.append((rows[own] + block.offset, base[rows[own]], src[out], dst[out], sim[out], dst_group[out]))
    return tuple(pieces)


def _sizes(pieces: tuple) -> np.ndarray:
    return np.array([len(piece[0]) for piece in pieces], np.int64)


@dataclass(frozen=True)
class Part:
    """One partition's greedy between stages: its candidates, the edges among them and to the other partitions."""

    members: np.ndarray  # global row numbers, ascending
    base: np.ndarray  # gains given the points bounding selected
    inside: sp.csr_matrix  # among members (local numbers)
    out_src: np.ndarray  # edges to other partitions' candidates: local source, global target, similarity, partition
    out_dst: np.ndarray
    out_sim: np.ndarray
    out_part: np.ndarray
    penalty: np.ndarray  # beta * similarity to the other partitions' picks so far
    selected: np.ndarray
    fresh: np.ndarray  # picked in the last stage (local numbers)


def _start(part: int, *pieces) -> Part:
    members, base, src, dst, sim, dst_part = (np.concatenate(column) for column in zip(*pieces))
    m, inside = len(members), dst_part == part
    local = np.searchsorted(members, src)
    graph = sp.csr_matrix((sim[inside], (local[inside], np.searchsorted(members, dst[inside]))), shape=(m, m))
    out = ~inside
    return Part(members, base, graph, local[out], dst[out], sim[out], dst_part[out], np.zeros(m), np.zeros(m, bool),
                np.zeros(0, np.int64))


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
    return tuple((part.out_dst[sent & (part.out_part == q)], part.out_sim[sent & (part.out_part == q)])
                 for q in range(parts))


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


def _round(tasks: Tasks, r: int, split: list, sizes: np.ndarray, keep: int, stages: int, beta: float, seed: int,
           offsets: np.ndarray) -> list:
    """One round's greedy; the winners (futures) per partition.

    Each partition picks its share of ``keep`` (in proportion to its candidates). With several
    partitions it does so in ``stages`` synchronized steps: after each, every partition sends the
    similarities of its new picks to their neighbours in other partitions, whose gains drop by them
    before the next step, so redundancy across partitions is seen (except among one step's picks).
    """
    parts = len(sizes)
    steps = 1 if parts == 1 else stages
    quotas = [apportion(int(q), np.ones(steps, np.int64)) for q in apportion(keep, sizes)]
    state = [tasks.submit(f"greedy{r}-start", p, _start, p, *[tasks.submit(f"piece{r}", f"{j}-{p}", getitem, s, p)
                                                              for j, s in enumerate(split)]) for p in range(parts)]
    for step in range(steps):
        state = [tasks.submit(f"greedy{r}-stage{step}", p, _stage, s, int(quotas[p][step]), beta,
                              _seed(seed, r, p, step)) for p, s in enumerate(state)]
        if step + 1 < steps:
            mail = [tasks.submit(f"greedy{r}-send{step}", p, _messages, s, parts) for p, s in enumerate(state)]
            state = [tasks.submit(f"greedy{r}-receive{step}", p, _receive, state[p], beta,
                                  *[tasks.submit(f"greedy{r}-mail{step}", f"{q}-{p}", getitem, m, p)
                                    for q, m in enumerate(mail) if q != p]) for p in range(parts)]
    return [tasks.submit(f"greedy{r}", p, _winners, s, offsets) for p, s in enumerate(state)]


def partition_greedy(tasks: Tasks, blocks: list, offsets: np.ndarray, states: list, cells: Cells,
                     open_slots: int, alpha: float, beta: float, seed: int, max_candidates: int, slack: float,
                     partitioning: str, stages: int, span: tuple[float, float]) -> tuple[list, list[dict]]:
    """The winners of the final round as a mask per partition (futures), and one record per round."""
    selected = exchange(tasks, "base", blocks, [tasks.submit("selected", j, _selected, s) for j, s in enumerate(states)])
    base = [tasks.submit("base", j, _base, blocks[j], alpha, beta, *selected[j]) for j in range(len(blocks))]
    alive = [tasks.submit("undecided", j, _undecided, s) for j, s in enumerate(states)]
    counts = np.sum(tasks.gather([tasks.submit("cell-counts0", j, _cell_counts, blocks[j], alive[j], cells.nlist)
                                  for j in range(len(blocks))]), axis=0)
    plan = schedule(int(counts.sum()), open_slots, max_candidates, slack)
    records = []
    for r, (parts, keep, final) in enumerate(plan, 1):
        groups = group_cells(cells.fine, counts, parts) if partitioning == "cells" else None
        cut = Cut(parts, groups, seed, r)
        halo_alive = exchange(tasks, f"alive{r}", blocks, alive)
        split = [tasks.submit(f"split{r}", j, _split, blocks[j], alive[j], base[j], cut, *halo_alive[j])
                 for j in range(len(blocks))]
        group_sizes = np.sum(tasks.gather([tasks.submit(f"sizes{r}", j, _sizes, s) for j, s in enumerate(split)]),
                             axis=0)
        winners = _round(tasks, r, split, group_sizes, keep, stages, beta, seed, offsets)
        start = span[0] + (span[1] - span[0]) * (r - 1) / len(plan)
        tasks.wait(f"greedy round {r}/{len(plan)} ({parts} partitions)", winners,
                   start, start + (span[1] - span[0]) / len(plan))
        alive = [tasks.submit(f"survivors{r}", j, _survivors, int(offsets[j + 1] - offsets[j]),
                              *[tasks.submit(f"won{r}", f"{p}-{j}", getitem, w, j) for p, w in enumerate(winners)])
                 for j in range(len(blocks))]
        records.append({"round": r, "candidates": int(group_sizes.sum()), "partitions": parts,
                        "largest_partition": int(group_sizes.max()), "kept": int(keep), "final": final})
        if not final:
            counts = np.sum(tasks.gather([tasks.submit(f"cell-counts{r}", j, _cell_counts, blocks[j], alive[j],
                                                       cells.nlist) for j in range(len(blocks))]), axis=0)
    return alive, records
