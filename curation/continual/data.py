"""Training data over a stream: the train rows of several chunk versions, the test rows of the newest.

Each chunk is loaded with ``TrainingData.load`` (same checks, same memory guard); ``StreamData.of``
joins them into one ``TrainingData`` the Trainer accepts, sorted by sample id, and remembers which
rows came from which chunk (what history sampling draws from).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from curation.config import Settings
from curation.data.versions import VersionInfo, open_version
from curation.errors import CurationError
from curation.training.data import Split, TrainingData


def load_chunk(settings: Settings, info: VersionInfo, device: torch.device) -> TrainingData:
    """One chunk version's train and test splits in memory."""
    _, reader = open_version(settings, info.id)
    return TrainingData.load(reader, info.id, info.feature_shape, device)


@dataclass
class StreamData:
    """``data.train``: every chunk's train rows; ``data.test``: the newest chunk's test rows."""

    data: TrainingData
    chunk_rows: list[np.ndarray]  # per chunk (arrival order), its rows in data.train
    version_ids: list[int]

    @classmethod
    def of(cls, chunks: Sequence[TrainingData]) -> StreamData:
        if not chunks:
            raise CurationError("no chunks to train on", "add a chunk with `curation data add` first")
        shapes = {c.feature_shape for c in chunks}
        if len(shapes) > 1:
            raise CurationError(
                f"chunks have different feature shapes {sorted(shapes)}", "train on chunks of one data set"
            )
        ids = np.concatenate([c.train.sample_ids for c in chunks])
        order = np.argsort(ids, kind="stable")
        repeated = ids[order][1:][np.diff(ids[order]) == 0]
        if len(repeated):
            raise CurationError(
                f"sample id {int(repeated[0])} is in two chunks",
                "add chunks with `curation data add SOURCE --name DATASET --chunk`, which gives a "
                "chunk whose ids collide fresh ids",
            )
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        bounds = np.cumsum([0] + [len(c.train) for c in chunks])
        newest = chunks[-1]
        device = newest.train.device
        index = torch.from_numpy(order)
        train = Split(
            "train",
            ids[order],
            torch.cat([c.train.features.to(device) for c in chunks]).index_select(0, index.to(device)),
            torch.cat([c.train.labels.to(device) for c in chunks]).index_select(0, index.to(device)),
            device,
        )
        data = TrainingData(newest.reader, newest.version_id, newest.feature_shape, train, newest.test)
        return cls(data, [position[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])], [c.version_id for c in chunks])
