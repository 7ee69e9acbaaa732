"""Files that tasks write: whole or not at all (temporary name, then rename), so a rerun task rewrites them safely."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def part_name(part: int, suffix: str = ".parquet") -> str:
    return f"part-{part:05d}{suffix}"


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary path)`` next to ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


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
