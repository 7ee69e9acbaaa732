"""Plans: for each epoch, the sample ids to train on (duplicates allowed) and optional weights.

A plan belongs to one data set version. Stored plans are Parquet (``epoch``, ``sample_id``,
``weight``); ``epoch == -1`` rows apply to every epoch. Generated plans (soft sampling, RS2)
compute ``ids(epoch)`` from their seed and are re-derivable bit for bit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.errors import CurationError

EVERY_EPOCH = -1


class Plan(ABC):
    """What the Trainer consumes. Subclasses implement ``ids`` (and ``weights`` if weighted)."""

    method: str = "plan"

    def __init__(self, version_id: int):
        self.version_id = version_id

    @abstractmethod
    def ids(self, epoch: int) -> np.ndarray:
        """Sample ids (int64) for this epoch, in training order before shuffling; may repeat."""

    def weights(self, epoch: int) -> np.ndarray | None:
        """Per-sample loss weights aligned with ``ids(epoch)``, or None for equal weights."""
        return None

    def describe(self) -> dict:
        return {"method": self.method, "version_id": self.version_id}


class FullPlan(Plan):
    """Every training sample, every epoch: the full-data baseline."""

    method = "full"

    def __init__(self, version_id: int, sample_ids: np.ndarray):
        super().__init__(version_id)
        self._ids = np.asarray(sample_ids, dtype=np.int64)

    def ids(self, epoch: int) -> np.ndarray:
        return self._ids


class StaticPlan(Plan):
    """A fixed subset (a coreset), the same every epoch, optionally weighted."""

    method = "subset"

    def __init__(self, version_id: int, sample_ids, weights=None, method: str = "subset"):
        super().__init__(version_id)
        self.method = method
        self._ids = np.asarray(sample_ids, dtype=np.int64)
        self._weights = None if weights is None else np.asarray(weights, dtype=np.float32)
        if self._weights is not None and self._weights.shape != self._ids.shape:
            raise CurationError("plan weights and sample ids differ in length", "give one weight per sample id")

    def ids(self, epoch: int) -> np.ndarray:
        return self._ids

    def weights(self, epoch: int) -> np.ndarray | None:
        return self._weights


class TablePlan(Plan):
    """A plan read from its Parquet table: rows per epoch, or ``epoch == -1`` rows for all epochs."""

    def __init__(self, version_id: int, table: pa.Table, method: str = "table"):
        super().__init__(version_id)
        self.method = method
        missing = {"epoch", "sample_id"} - set(table.column_names)
        if missing:
            raise CurationError(f"plan table lacks columns {sorted(missing)}", "write epoch, sample_id[, weight]")
        self._epoch = table.column("epoch").to_numpy().astype(np.int64)
        self._ids = table.column("sample_id").to_numpy().astype(np.int64)
        self._weights = table.column("weight").to_numpy().astype(np.float32) if "weight" in table.column_names else None

    @classmethod
    def read(cls, path: str | Path, version_id: int, method: str = "table") -> TablePlan:
        try:
            return cls(version_id, pq.read_table(path), method)
        except (pa.ArrowException, OSError) as exc:
            raise CurationError(f"cannot read plan {path}: {exc}", "restore the plan file or select again") from None

    def _mask(self, epoch: int) -> np.ndarray:
        mask = self._epoch == epoch
        return mask if mask.any() else self._epoch == EVERY_EPOCH

    def ids(self, epoch: int) -> np.ndarray:
        return self._ids[self._mask(epoch)]

    def weights(self, epoch: int) -> np.ndarray | None:
        return None if self._weights is None else self._weights[self._mask(epoch)]


def plan_table(plan: Plan, epochs: int) -> pa.Table:
    """Materialise ``epochs`` epochs of a plan as its Parquet table (epoch, sample_id, weight)."""
    parts = []
    for epoch in range(epochs):
        ids = plan.ids(epoch)
        w = plan.weights(epoch)
        parts.append(
            pa.table(
                {
                    "epoch": pa.array(np.full(len(ids), epoch, np.int32)),
                    "sample_id": pa.array(ids, pa.int64()),
                    "weight": pa.array(np.ones(len(ids), np.float32) if w is None else w, pa.float32()),
                }
            )
        )
    return pa.concat_tables(parts)
