"""The whole distributed selection on one Dask client: graph, bounding, partition greedy, plan parts.

``select(client, embeddings, utility, params, workdir, out)`` reads partitioned Parquet, builds the
k-NN graph under ``workdir`` (removed at the end), decides what bounding can, runs the partition
greedy on the rest and writes one plan part per partition into ``out``. The driver (this process)
only ever holds per-partition counts, thresholds, cell centroids and round records.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from curation.distributed.blocks import Block, exchange, load_blocks
from curation.distributed.bounding import bound
from curation.distributed.cells import default_nlist
from curation.distributed.cluster import Clock, Report, Tasks
from curation.distributed.files import part_name
from curation.distributed.graph import build_graph, scan
from curation.distributed.partition_greedy import PARTITIONINGS, partition_greedy
from curation.distributed.plan import write_part
from curation.distributed.source import Source
from curation.errors import CurationError
from curation.selection.base import check_seed, resolve_budget
from curation.selection.knn import EXACT_MAX, check_k_neighbors
from curation.selection.pairwise import DENSITY, _check_weight, gains

SPANS = {
    "scan": (0.0, 0.08),
    "shards": (0.08, 0.18),
    "search": (0.18, 0.55),
    "scale": (0.55, 0.57),
    "symmetrize": (0.57, 0.65),
    "load": (0.65, 0.7),
    "bounding": (0.7, 0.75),
    "greedy": (0.75, 0.95),
    "write": (0.95, 1.0),
}


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise CurationError(f"{name} must be a positive integer, got {value!r}", f"give {name} like 1000")
    return int(value)


@dataclass(frozen=True)
class Params:
    """The method's parameters (recorded with the plan). Objective as the ``pairwise`` selector's."""

    budget: int | float = 0.1
    seed: int = 0
    alpha: float = 1.0
    beta: float = 1.0
    k_neighbors: int = 10
    utility: str = DENSITY  # or a score of the score set
    source: str = "embeddings"  # or "features" (the version's raw features)
    partition_rows: int = 500_000  # file rows per partition: one task's embeddings
    shard_rows: int = 2_500_000  # embeddings per k-NN index shard (at least two shards for two partitions)
    max_candidates: int = 1_000_000  # most candidates one greedy task holds
    slack: float = 1.0  # rounds before the last keep (1 + slack) x the open budget at least
    partitioning: str = "cells"  # or "random" (the paper's)
    stages: int = 8  # synchronized steps of a round with several partitions; 1 = independent greedy (the paper's)
    nprobe: int | None = None  # cells each query scans (IVF, above exact_max points); default: calibrated to recall
    recall: float = 0.99  # k-NN recall the calibration asks for
    nlist: int | None = None  # cells; default ~ N / 250
    exact_max: int = EXACT_MAX  # exact k-NN up to this many points

    @classmethod
    def of(cls, params: dict | None) -> Params:
        """Validated parameters from a dict; one-line errors for unknown names or bad values."""
        params = dict(params or {})
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise CurationError(f"unknown parameters for pairwise-distributed: {unknown}", f"use {', '.join(names)}")
        made = cls(**params)
        check_seed(made.seed)
        _check_weight("alpha", made.alpha)
        _check_weight("beta", made.beta)
        _check_weight("slack", made.slack)
        check_k_neighbors(made.k_neighbors)
        for name in ("partition_rows", "shard_rows", "max_candidates", "stages"):
            _positive_int(name, getattr(made, name))
        for name in ("nlist", "nprobe"):
            if getattr(made, name) is not None:
                _positive_int(name, getattr(made, name))
        if isinstance(made.recall, bool) or not isinstance(made.recall, (int, float)) or not 0 < made.recall <= 1:
            raise CurationError(f"recall must be in (0, 1], got {made.recall!r}", "give recall like 0.99")
        if isinstance(made.exact_max, bool) or not isinstance(made.exact_max, int) or made.exact_max < 0:
            raise CurationError(f"exact_max must be an integer >= 0, got {made.exact_max!r}", "give e.g. 100000")
        if made.partitioning not in PARTITIONINGS:
            raise CurationError(
                f"partitioning must be one of {', '.join(PARTITIONINGS)}, got {made.partitioning!r}",
                "give partitioning=cells (default) or random",
            )
        if made.source not in ("embeddings", "features"):
            raise CurationError(
                f"source must be embeddings or features, got {made.source!r}",
                "give source=features to use the version's raw features",
            )
        return made

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Selection:
    """What a run chose and what it took."""

    n: int
    k: int
    objective: float
    partitions: int
    sigma: float
    exact: bool
    nprobe: int | None  # cells each k-NN query scanned (None: exact search)
    recall: float  # k-NN recall measured on sample queries
    nlist: int
    edges: int  # undirected
    bounding: list[dict]
    bounded_selected: int
    bounded_discarded: int
    rounds: list[dict]
    parts: list[tuple[str, str, int]]  # plan parts: name, md5, rows
    seconds: dict[str, float] = field(default_factory=dict)  # wall, per phase
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # all workers' CPU, per phase
    peak_mb: dict[str, float] = field(default_factory=dict)  # the largest worker's peak resident memory, per phase
    reruns: dict[str, int] = field(default_factory=dict)
    worker_peak_mb: dict[str, float] = field(default_factory=dict)

    @property
    def decided_by_bounding(self) -> float:
        return (self.bounded_selected + self.bounded_discarded) / self.n


def _chosen(state: np.ndarray, won: np.ndarray | None) -> np.ndarray:
    return state > 0 if won is None else (state > 0) | won


def _objective(block: Block, chosen: np.ndarray, alpha: float, beta: float, *halo) -> float:
    """This partition's share of f(S): 1/2 sum over its chosen v of (alpha u(v) + gain(v | S))."""
    own = gains(block.graph[chosen], block.utility[chosen], np.concatenate(halo), alpha, beta)
    return 0.5 * float(alpha * block.utility[chosen].sum() + own.sum())


def _write(block: Block, chosen: np.ndarray, path: Path) -> tuple[str, str, int]:
    return write_part(block.sample_ids[chosen], path)


def _edges(block: Block) -> int:
    return block.nnz


def select(
    client,
    embeddings: Source,
    utility: Source | None,
    params: Params,
    workdir: Path,
    out: Path,
    report: Report | None = None,
) -> Selection:
    """Run the whole selection; the plan parts land in ``out`` (created), intermediate files under ``workdir``."""
    tasks = Tasks(client, report)
    workdir = Path(workdir) / f"run-{tasks.run}"
    clock = Clock(client)
    try:
        rows = max(embeddings.rows, 1)
        resolve_budget(params.budget, rows)  # a budget above the file rows fails before any work
        found = scan(
            tasks,
            embeddings,
            utility,
            params.partition_rows,
            params.nlist or default_nlist(rows, params.max_candidates),
            params.seed,
            SPANS["scan"],
        )
        if found.n == 0:
            raise CurationError("no samples to select from", "check the input and its train split")
        k = resolve_budget(params.budget, found.n)
        graph = build_graph(
            tasks,
            embeddings,
            found,
            workdir,
            params.k_neighbors,
            params.nlist or default_nlist(found.n, params.max_candidates),
            params.nprobe,
            params.recall,
            params.shard_rows,
            params.seed,
            [SPANS[s] for s in ("shards", "search", "scale", "symmetrize")],
            params.exact_max,
        )
        clock.lap("graph")
        blocks = load_blocks(tasks, graph, utility, found.ranges, SPANS["load"])
        clock.lap("load")
        bounded = bound(tasks, blocks, found.n, k, params.alpha, params.beta, SPANS["bounding"])
        clock.lap("bounding")
        won, rounds = [None] * graph.parts, []
        if bounded.selected + bounded.discarded < found.n:
            won, rounds = partition_greedy(
                tasks,
                blocks,
                graph.offsets,
                bounded.states,
                graph.cells,
                workdir / "greedy",
                k - bounded.selected,
                params.alpha,
                params.beta,
                params.seed,
                params.max_candidates,
                params.slack,
                params.partitioning,
                params.stages,
                SPANS["greedy"],
            )
        clock.lap("greedy")
        chosen = [tasks.submit("chosen", j, _chosen, s, w) for j, (s, w) in enumerate(zip(bounded.states, won))]
        halos = exchange(tasks, "final", blocks, chosen)
        shares = [
            tasks.submit("objective", j, _objective, blocks[j], chosen[j], params.alpha, params.beta, *halos[j])
            for j in range(graph.parts)
        ]
        parts = [
            tasks.submit("write-plan", j, _write, blocks[j], chosen[j], Path(out) / part_name(j))
            for j in range(graph.parts)
        ]
        tasks.wait("writing the plan", parts, *SPANS["write"])
        parts = tasks.gather(parts)
        selected = sum(count for _, _, count in parts)
        if selected != k:
            raise RuntimeError(f"selected {selected} points for a budget of {k}")  # a bug, never a user error
        clock.lap("write")
        return Selection(
            n=found.n,
            k=k,
            objective=math.fsum(tasks.gather(shares)),
            partitions=graph.parts,
            sigma=graph.sigma,
            exact=graph.exact,
            nprobe=graph.nprobe,
            recall=graph.recall,
            nlist=graph.cells.nlist,
            edges=sum(tasks.gather([tasks.submit("edges", j, _edges, b) for j, b in enumerate(blocks)])) // 2,
            bounding=bounded.passes,
            bounded_selected=bounded.selected,
            bounded_discarded=bounded.discarded,
            rounds=rounds,
            parts=parts,
            seconds=clock.seconds,
            cpu_seconds=clock.cpu_seconds,
            peak_mb=clock.peak_mb,
            reruns=tasks.reruns(),
            worker_peak_mb=clock.worker_peak_mb,
        )
    finally:
        tasks.close()
        shutil.rmtree(workdir, ignore_errors=True)
