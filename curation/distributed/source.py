"""Partitioned Parquet input: one column of one or more Parquet files, read as row ranges, one per task.

A ``Source`` is a column (``features``/``embedding``: a fixed-size list; a score: a number) plus
``sample_id``, across the files of a folder in name order. A partition is a range of file rows,
``partition_rows`` long; only the row groups it overlaps are read. Rows whose ``split`` column (when
the file has one) differs from ``split`` are left out, so a version's test rows never take part.
Two sources that are read together (embeddings and utilities) must hold the same sample ids, row for
row, in every partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.data import transforms
from curation.data.contract import MANIFEST_KEY, read_manifest
from curation.data.store import features_numpy
from curation.errors import CurationError


@dataclass(frozen=True)
class Source:
    """A column of a partitioned Parquet data set: ``files`` in read order, their row counts."""

    files: tuple[str, ...]
    column: str
    file_rows: tuple[int, ...]
    split: str | None = "train"

    @classmethod
    def of(cls, path: str | Path, column: str, split: str | None = "train") -> Source:
        """A Parquet file or a folder of them; a one-line error when missing, unreadable or lacking ``column``."""
        path = Path(path)
        files = (
            sorted(p for p in path.glob("*.parquet") if not p.name.startswith((".", "_"))) if path.is_dir() else [path]
        )
        if not files or not files[0].is_file():
            raise CurationError(f"no Parquet data at {path}", "give a .parquet file or a folder of them")
        rows = []
        for file in files:
            try:
                meta = pq.ParquetFile(file)
            except (pa.ArrowException, OSError) as exc:
                raise CurationError(f"cannot read {file}: {exc}", "restore the file or rewrite it") from None
            names = meta.schema_arrow.names
            for needed in ("sample_id", column):
                if needed not in names:
                    raise CurationError(
                        f"{file} has no column {needed!r} (has: {', '.join(names)})", "name a column that the file has"
                    )
            rows.append(meta.metadata.num_rows)
        return cls(tuple(str(f) for f in files), column, tuple(rows), split)

    @property
    def rows(self) -> int:
        """File rows, before the split filter."""
        return sum(self.file_rows)

    @property
    def width(self) -> int:
        """Values per row: the list size of a list column, else 1."""
        kind = pq.read_schema(self.files[0]).field(self.column).type
        return kind.list_size if pa.types.is_fixed_size_list(kind) else 1

    def partitions(self, partition_rows: int) -> list[tuple[int, int]]:
        """Row ranges [start, stop) of at most ``partition_rows`` file rows each."""
        bounds = list(range(0, self.rows, partition_rows)) + [self.rows]
        return list(zip(bounds[:-1], bounds[1:]))

    def read_table(self, start: int, stop: int) -> pa.Table:
        """``sample_id`` and the column for file rows [start, stop), after the split filter."""
        parts, first = [], 0
        for file, count in zip(self.files, self.file_rows):
            lo, hi = max(start - first, 0), min(stop - first, count)
            if lo < hi:
                parts.append(_read_rows(file, lo, hi, self.column, self.split))
            first += count
        return pa.concat_tables(parts) if len(parts) > 1 else parts[0]

    def read(self, start: int, stop: int, what: str) -> tuple[np.ndarray, np.ndarray]:
        """(sample ids, values): an (n, d) float32 matrix for a list column, else float64; finite or a one-line
        error."""
        table = self.read_table(start, stop)
        ids = table.column("sample_id").to_numpy().astype(np.int64)
        column = table.column(self.column)
        if pa.types.is_fixed_size_list(column.type):
            values = features_numpy(table.select([self.column]).rename_columns(["features"])).astype(np.float32)
            bad = ~np.isfinite(values).all(axis=1)
        elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            values = column.to_numpy().astype(np.float64)
            bad = ~np.isfinite(values)
        else:
            raise CurationError(
                f"column {self.column!r} of {self.files[0]} is {column.type}",
                "give a fixed-size list (embeddings) or a numeric column (utility)",
            )
        if bad.any():
            raise CurationError(
                f"{what} have NaN or inf in {int(bad.sum())} rows (first: sample_id "
                f"{int(ids[np.flatnonzero(bad)[0]])})",
                "rescore or drop those samples",
            )
        return ids, values


def _read_rows(file: str, lo: int, hi: int, column: str, split: str | None) -> pa.Table:
    """Rows [lo, hi) of one file, reading only the row groups they overlap."""
    handle = pq.ParquetFile(file)
    sizes = [handle.metadata.row_group(i).num_rows for i in range(handle.num_row_groups)]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    groups = [i for i in range(len(sizes)) if starts[i] < hi and starts[i + 1] > lo]
    has_split = split is not None and "split" in handle.schema_arrow.names
    table = handle.read_row_groups(groups, columns=["sample_id", column] + (["split"] if has_split else []))
    table = table.slice(lo - starts[groups[0]], hi - lo)
    if has_split:
        table = table.filter(pc.equal(table.column("split"), split)).drop_columns(["split"])
    if column == "features" and MANIFEST_KEY in (handle.schema_arrow.metadata or {}):  # a version: as models see it
        table = transforms.apply(table, read_manifest(handle.schema_arrow).get("transform"))
    return table


def check_aligned(ids: np.ndarray, other: np.ndarray, partition: int) -> None:
    """Embeddings and utilities of one partition name the same samples in the same order, or a one-line error."""
    if len(ids) != len(other):
        raise CurationError(
            f"embeddings and utilities are partitioned differently: partition {partition} has "
            f"{len(ids)} embedding rows and {len(other)} utility rows",
            "write both with the same sample ids in the same row order",
        )
    differ = ids != other
    if differ.any():
        at = int(np.flatnonzero(differ)[0])
        raise CurationError(
            f"embeddings and utilities are partitioned differently: partition {partition} row {at} "
            f"is sample {int(ids[at])} in the embeddings and {int(other[at])} in the utilities",
            "write both with the same sample ids in the same row order",
        )
