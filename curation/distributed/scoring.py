"""Scoring on Dask (`curation score --engine dask`): the score set's parts (``scoring.run.part_bounds``: whole row
groups of the version, cut as the local path cuts them) scored on the workers.

Each task owns one part: it builds the proxy model from its state dict (a checkpoint beside the parts, so a task
rerun on a fresh worker finds it), opens the version itself, streams its rows through ``score_batches`` on the
worker's CPU in the batches the local path cuts (never across a row group, so the scores agree bit for bit) and
writes its part, whole or not at all, straight into the score set's hidden folder with its md5: this process
only names the folder. On a failure the caller removes the folder, after the other tasks have finished.
"""

from __future__ import annotations

import shutil
from concurrent.futures import CancelledError
from contextlib import suppress
from pathlib import Path

import numpy as np
import torch
from distributed import wait

from curation.data.store import VersionReader
from curation.distributed.cluster import Tasks
from curation.files import move_into_place, temporary_path
from curation.scoring.run import write_parts
from curation.scoring.scores import score_batches
from curation.training.checkpoint import load_checkpoint, save_checkpoint
from curation.training.streaming import StreamedSplit
from models import build


def scores_on_dask(
    client,
    reader: VersionReader,
    shape: tuple[int, ...],
    proxy: tuple,
    rows: tuple[np.ndarray, np.ndarray],
    forgetting: np.ndarray | None,
    bounds: list[tuple[int, int]],
    folder: Path,
) -> dict[str, str]:
    """Score the train rows ``rows`` = (sample ids, their rows in the file) of ``reader``'s version with ``proxy`` =
    (arch, ModelSpec, state dict) on ``client``'s workers, part ``k`` (``bounds[k]``) into ``folder``;
    {file name: md5} of the parts."""
    sample_ids, file_rows = rows
    checkpoint = temporary_path(folder.parent, "proxy")
    tasks, futures = Tasks(client), []
    try:
        arch, spec, state = proxy
        save_checkpoint(checkpoint, {"arch": arch, "model": state})
        for part, (lo, hi) in enumerate(bounds):
            shard = (sample_ids[lo:hi], file_rows[lo:hi])
            extra = None if forgetting is None else forgetting[lo:hi]
            futures.append(
                tasks.submit(
                    "score",
                    part,
                    _score_part,
                    str(reader.path),
                    shape,
                    (arch, spec, checkpoint),
                    shard,
                    extra,
                    folder,
                    part,
                )
            )
        tasks.wait("score", futures, 0.0, 1.0)
        return {name: md5 for name, md5 in tasks.gather(futures)}
    finally:
        with suppress(CancelledError):  # a task failed: the others finish before the caller removes the folder
            wait(futures)
        tasks.close()
        checkpoint.unlink(missing_ok=True)


def _score_part(path: str, shape, proxy: tuple, shard, forgetting, folder: Path, part: int) -> tuple[str, str]:
    """On a worker: one part's scores with ``proxy`` = (arch, ModelSpec, checkpoint), written into ``folder``
    (whole or not at all); (its file name, its md5)."""
    arch, spec, checkpoint = proxy
    model = build(arch, spec)
    model.load_state_dict(load_checkpoint(checkpoint)["model"])
    split = StreamedSplit(VersionReader(path), "train", shape, torch.device("cpu"), 0, shard)
    staged = temporary_path(folder, f"part-{part}")
    staged.mkdir()
    try:
        digests, _ = write_parts(staged, score_batches(model, split, forgetting), [(0, len(shard[0]))], part)
        [(name, md5)] = digests.items()
        move_into_place(staged / name, folder / name)
        return name, md5
    finally:
        split.close()
        shutil.rmtree(staged, ignore_errors=True)
