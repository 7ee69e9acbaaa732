"""Scoring on Dask (`curation score --engine dask`): the train split sharded by Parquet row groups.

Each task owns a contiguous range of the version's row groups: it builds the proxy model from its state dict
(a checkpoint beside the parts, so a task rerun on a fresh worker finds it), opens the version file itself,
streams its rows through ``score_batches`` on the worker's CPU in the batches the local path cuts (never across
a row group, so the scores agree bit for bit) and writes its part whole or not at all. The parts are read back
in row order, one row group (= one batch) at a time, and removed when the caller is done, or when anything
failed (after the other tasks have finished).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import CancelledError
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from distributed import wait

from curation.data.store import VersionReader
from curation.distributed.cluster import Tasks
from curation.distributed.files import part_name
from curation.files import temporary_path, write_atomic
from curation.scoring.scores import score_batches
from curation.training.checkpoint import load_checkpoint, save_checkpoint
from curation.training.streaming import StreamedSplit, run_bounds

TASKS_PER_WORKER = 4  # shards per worker: a balanced finish, and a cheap rerun of a lost one


@contextmanager
def sharded_scores(
    client,
    reader: VersionReader,
    shape: tuple[int, ...],
    proxy: tuple,
    rows: tuple[np.ndarray, np.ndarray],
    forgetting: np.ndarray | None,
    folder: Path,
) -> Iterator[Iterator[pa.RecordBatch]]:
    """Score the train rows ``rows`` = (sample ids, their rows in the file: a streamed split's) of ``reader``'s
    version with ``proxy`` = (arch, ModelSpec, state dict) on ``client``'s workers; yields their record batches in
    row order (parts under ``folder``, removed on exit)."""
    sample_ids, file_rows = rows
    parts = temporary_path(folder, "parts")
    tasks, futures = Tasks(client), []
    try:
        workers = max(1, len(client.scheduler_info()["workers"]))
        arch, spec, state = proxy
        save_checkpoint(parts / "proxy.pt", {"arch": arch, "model": state})
        checkpoint = (arch, spec, parts / "proxy.pt")
        for part, (lo, hi) in enumerate(shards(reader.group_starts, file_rows, TASKS_PER_WORKER * workers)):
            shard = (sample_ids[lo:hi], file_rows[lo:hi])
            extra = None if forgetting is None else forgetting[lo:hi]
            futures.append(
                tasks.submit(
                    "score",
                    part,
                    _score_shard,
                    str(reader.path),
                    shape,
                    checkpoint,
                    shard,
                    extra,
                    parts / part_name(part),
                )
            )
        tasks.wait("score", futures, 0.0, 1.0)
        yield (batch for path in tasks.gather(futures) for batch in _row_groups(path))
    finally:
        with suppress(CancelledError):  # a task failed: the others finish before their folder is removed
            wait(futures)
        tasks.close()
        shutil.rmtree(parts, ignore_errors=True)


def shards(starts: np.ndarray, file_rows: np.ndarray, tasks: int) -> list[tuple[int, int]]:
    """(start, stop) positions in ``file_rows`` (sorted) of at most ``tasks`` shards, each the rows of a contiguous
    range of the row groups that hold any (``starts``: ``VersionReader.group_starts``)."""
    bounds = run_bounds(starts, file_rows)
    used = np.flatnonzero(np.diff(bounds))
    owned = np.array_split(used, min(tasks, len(used))) if len(used) else []
    edges = [int(bounds[g[0]]) for g in owned] + [len(file_rows)]
    return [(lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]


def _score_shard(path: str, shape, proxy: tuple, shard, forgetting, out: Path) -> Path:
    """On a worker: one shard's scores with ``proxy`` = (arch, ModelSpec, checkpoint), written to ``out``."""
    from curation.scoring.run import write_batches
    from models import build

    arch, spec, checkpoint = proxy
    model = build(arch, spec)
    model.load_state_dict(load_checkpoint(checkpoint)["model"])
    split = StreamedSplit(VersionReader(path), "train", shape, torch.device("cpu"), 0, shard)
    try:
        return write_atomic(out, lambda tmp: write_batches(tmp, score_batches(model, split, forgetting)))
    finally:
        split.close()


def _row_groups(path: Path) -> Iterator[pa.RecordBatch]:
    """A part's record batches as they were written (one row group each), one in memory at a time."""
    part = pq.ParquetFile(path, pre_buffer=False)  # one row group in memory at a time
    for group in range(part.num_row_groups):
        yield from part.read_row_group(group).to_batches()
