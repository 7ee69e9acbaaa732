"""The data a run trains and evaluates on: a version's train and test splits as tensors, looked up by sample id."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import psutil
import torch

from curation.data.store import VersionReader, features_numpy
from curation.errors import CurationError

COLUMNS = ["sample_id", "label", "features"]
MEMORY_SHARE = 0.8  # refuse to load a split bigger than this share of available memory
DEVICE_SHARE = 0.5  # keep a split on the GPU when it takes at most this share of free GPU memory


@dataclass
class Split:
    """One split in memory: sorted sample ids, features shaped (N, *feature_shape), int64 labels."""

    name: str
    sample_ids: np.ndarray
    features: torch.Tensor
    labels: torch.Tensor
    device: torch.device

    def __len__(self) -> int:
        return len(self.sample_ids)

    def batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels of these rows, on the training device."""
        index = torch.from_numpy(rows).to(self.features.device)
        x, y = self.features.index_select(0, index), self.labels.index_select(0, index)
        if x.device != self.device:  # too big for the GPU: pinned copy, transferred asynchronously
            x, y = x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
        return x, y


@dataclass
class TrainingData:
    """A version's train split (what plans index) and test split (what every epoch is evaluated on)."""

    reader: VersionReader
    version_id: int
    feature_shape: tuple[int, ...]
    train: Split
    test: Split

    @classmethod
    def load(cls, reader: VersionReader, version_id: int, feature_shape, device: torch.device) -> TrainingData:
        shape = tuple(int(s) for s in feature_shape)
        splits = reader.manifest.get("splits") or {}
        for name in ("train", "test"):
            if not splits.get(name):
                raise CurationError(f"version {version_id} has no {name!r} split (splits: {splits or 'none'})",
                                    "add the data with a split column holding 'train' and 'test' rows")
        need = (splits["train"] + splits["test"]) * int(np.prod(shape)) * 4
        if need > MEMORY_SHARE * psutil.virtual_memory().available:
            raise CurationError(f"version {version_id} needs {need / 2**30:.1f} GiB in memory to train",
                                "free memory or train on a smaller version")
        return cls(reader, version_id, shape, *(_load_split(reader, n, shape, device) for n in ("train", "test")))

    def train_rows(self, sample_ids: np.ndarray) -> np.ndarray:
        """Rows in the train split of these ids; a one-line error for ids outside the version or its train split."""
        ids = np.asarray(sample_ids, dtype=np.int64)
        known = self.train.sample_ids
        pos = np.minimum(np.searchsorted(known, ids), len(known) - 1)
        outside = known[pos] != ids
        if outside.any():
            bad = ids[outside]
            self.reader.rows_of(bad)  # raises for ids that are not in the version at all
            raise CurationError(f"{len(bad)} sample ids are in the test split of version {self.version_id} "
                                f"(first: {int(bad[0])})", "train only on ids of the train split")
        return pos


def _load_split(reader: VersionReader, name: str, shape: tuple[int, ...], device: torch.device) -> Split:
    table = reader.read(COLUMNS, split=name)
    ids = table.column("sample_id").to_numpy()
    if len(ids) > 1 and (np.diff(ids) <= 0).any():
        raise CurationError(f"sample ids of {reader.path} are not sorted",
                            "re-add the version with `curation data add`")
    features = torch.from_numpy(np.require(features_numpy(table), requirements="W")).reshape(len(ids), *shape)
    labels = torch.from_numpy(table.column("label").to_numpy().astype(np.int64))
    if device.type == "cuda" and features.nbytes <= DEVICE_SHARE * torch.cuda.mem_get_info(device)[0]:
        features, labels = features.to(device), labels.to(device)
    return Split(name, ids, features, labels, device)
