"""Files that tasks write: whole or not at all (``curation.files.write_atomic``), so a rerun task rewrites them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.files import write_atomic


def part_name(part: int, suffix: str = ".parquet") -> str:
    return f"part-{part:05d}{suffix}"


def write_parquet(table: pa.Table, path: Path, **options) -> Path:
    return write_atomic(path, lambda tmp: pq.write_table(table, tmp, **options))


def write_npy(values: np.ndarray, path: Path) -> Path:
    return write_atomic(path, lambda tmp: _dump(tmp, np.save, values))


def write_npz(arrays: dict[str, np.ndarray], path: Path) -> Path:
    return write_atomic(path, lambda tmp: _dump(tmp, np.savez, **arrays))


def _dump(path: Path, save: Callable, *args, **kwargs) -> None:
    """numpy's savers given an open file: given a path they would append their own suffix."""
    with open(path, "wb") as handle:
        save(handle, *args, **kwargs)
