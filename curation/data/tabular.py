"""A user's Parquet or CSV file, read a batch at a time: adding it holds one batch of features, whatever its size.

``TabularFile`` checks the file and reads any of its columns in batches of ``BATCH_ROWS`` (or a few whole).
``streamed`` makes a ``Loaded`` of a tabular file in two passes over its features: the first checks them
(numeric, no missing values, finite in float32) and fits the standardization on the train split; the second,
run when the version is written, builds the contract's rows batch by batch. What stays in memory is the
per-row bookkeeping of ``curation.data.rows`` (class index and split: 2 bytes a row). A file whose sample ids
do not ascend is sorted in memory (its features read whole), as there is no order to stream it in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from curation.data.contract import manifest, rows_table, sorted_order, with_manifest
from curation.data.transforms import StandardizeFit
from curation.errors import CurationError

if TYPE_CHECKING:
    from curation.data.rows import RowIndex

BATCH_ROWS = 65_536  # rows read at a time, at most ...
BATCH_BYTES = 16 << 20  # ... and about this many bytes of a Parquet file's columns (wide rows: fewer rows)
READ_BUFFER = 1 << 20  # bytes read ahead per column by a batched read
PARQUET = (".parquet", ".pq")
CSV = (".csv", ".txt")


class TabularFile:
    """A Parquet or CSV file: its column names and types, and readers of its columns."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        path = self.path
        if not path.exists():
            raise CurationError(f"file {path} does not exist", "check the path")
        if not path.is_file():
            raise CurationError(f"{path} is not a file", "give a .parquet or .csv file")
        if path.stat().st_size == 0:
            raise CurationError(f"file {path} is empty", "give a file with a header and at least one row")
        suffix = path.suffix.lower()
        if suffix not in PARQUET + CSV:
            raise CurationError(
                f"unsupported file type {suffix or '(none)'} for {path}", "give a .parquet or .csv file"
            )
        self.parquet = suffix in PARQUET
        with self._errors():
            self.schema = pq.read_schema(path) if self.parquet else pacsv.open_csv(path).schema
            self.schema.names  # noqa: B018 - decode the header now: names must be UTF-8

    @property
    def names(self) -> list[str]:
        return self.schema.names

    def read(self, columns: list[str]) -> pa.Table:
        """Whole columns (for the few small ones: labels, ids, split)."""
        with self._errors():
            if self.parquet:
                return pq.read_table(self.path, columns=columns)
            return pacsv.read_csv(self.path, convert_options=pacsv.ConvertOptions(include_columns=columns))

    def batches(
        self, columns: list[str], rows: int = BATCH_ROWS, numeric: list[str] | None = None
    ) -> Iterator[pa.Table]:
        """The columns, at most ``rows`` rows and about ``BATCH_BYTES`` at a time (a CSV a block of text at a
        time, its ``numeric`` columns read as float64: features; default all of them)."""
        with self._errors():
            if self.parquet:
                parquet = pq.ParquetFile(self.path, pre_buffer=False, buffer_size=READ_BUFFER)  # no cache: bounded
                for batch in parquet.iter_batches(batch_size=_batch_rows(parquet, columns, rows), columns=columns):
                    yield pa.Table.from_batches([batch])
                return
            numeric = columns if numeric is None else numeric
            options = pacsv.ConvertOptions(include_columns=columns, column_types=dict.fromkeys(numeric, pa.float64()))
            reader = pacsv.open_csv(self.path, convert_options=options)
            for batch in reader:
                yield pa.Table.from_batches([batch])

    def _errors(self):
        return _ReadErrors(self.path)


def _batch_rows(parquet: pq.ParquetFile, columns: list[str], rows: int) -> int:
    """Rows a batch of ``columns`` may hold: at most ``rows``, and ``BATCH_BYTES`` over the columns' decoded
    bytes a row (the file's widest row group says)."""
    meta, wanted = parquet.metadata, set(columns)
    per_row = 1.0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        size = sum(
            group.column(c).total_uncompressed_size
            for c in range(group.num_columns)
            if any(_within(group.column(c).path_in_schema, w) for w in wanted)
        )
        per_row = max(per_row, size / max(1, group.num_rows))
    return int(max(1, min(rows, BATCH_BYTES // per_row)))


def _within(path: str, column: str) -> bool:
    """Whether a Parquet leaf column (``features.list.element``, ``a.b``) stores the column named ``column``."""
    return path == column or path.startswith(column + ".")


class _ReadErrors:
    """Arrow's read errors as one line naming the file."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if isinstance(exc, pa.ArrowInvalid) and "CSV conversion error" in str(exc):
            raise CurationError(
                f"a feature column in {self.path} is not numeric ({str(exc).strip().splitlines()[0]})",
                "give numeric feature columns only (use --feature-columns to pick them)",
            ) from None
        if isinstance(exc, pa.ArrowException | OSError | UnicodeDecodeError):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CurationError(
                f"cannot read {self.path}: {first}", f"check that it is a valid {self.path.suffix[1:]} file"
            ) from None
        return False


def streamed(
    file: TabularFile, feature_columns: list[str], rows: RowIndex, standardize: bool
) -> tuple[pa.Schema, Callable[[], Iterator[pa.Table]]]:
    """The version's schema (with its manifest) and a reader of its rows in sample-id order, a table at a time."""
    what = str(file.path)
    order = None if rows.ids is None else sorted_order(rows.ids, what)
    width, fit = _check_features(file, feature_columns, rows)
    names = rows.split_names
    empty = np.zeros((0, width), np.float32)
    schema = rows_table(np.zeros(0, np.int64), rows.labels[:0], empty, rows.codes[:0], names).schema
    transform = fit.transform() if standardize else None
    shaped = manifest(schema, [width], rows.class_names, transform, labels=rows.labels, splits=rows.split_counts())

    def read() -> Iterator[pa.Table]:
        if order is None:
            for lo, ids, values, _ in _features(file, feature_columns, rows):
                hi = lo + len(values)
                yield rows_table(ids, rows.labels[lo:hi], values, rows.codes[lo:hi], names)
            return
        values = np.concatenate([values for _, _, values, _ in _features(file, feature_columns, rows)])[order]
        for lo in range(0, len(rows), BATCH_ROWS):
            part = order[lo : lo + BATCH_ROWS]
            yield rows_table(rows.ids[part], rows.labels[part], values[lo : lo + BATCH_ROWS], rows.codes[part], names)

    return with_manifest(schema, shaped), read


def _check_features(file: TabularFile, columns: list[str], rows: RowIndex) -> tuple[int, StandardizeFit]:
    """One pass over the features: their width, and the standardization fitted on the train rows; one-line
    errors (with totals over the whole file) for missing or non-finite values."""
    fit, width, bad, first_bad = StandardizeFit(), None, 0, None
    missing = dict.fromkeys(columns, 0)
    for lo, ids, values, nulls in _features(file, columns, rows):
        for name, count in nulls.items():
            missing[name] += count
        if width is not None and values.shape[1] != width:
            raise CurationError(
                f"feature lists in {file.path} have different lengths", "give every row the same number of features"
            )
        width = values.shape[1]
        finite = np.isfinite(values).all(axis=1)
        if not finite.all():
            bad += int((~finite).sum())
            if first_bad is None:
                first_bad = int(ids[np.flatnonzero(~finite)[0]])
        fit.add(values[finite & rows.train(lo, lo + len(values))])
    for name, count in missing.items():
        if count:
            raise CurationError(
                f"feature column {name!r} in {file.path} has {count} missing values", "fill or drop those rows"
            )
    if bad:
        raise CurationError(
            f"{file.path} has {bad} rows with NaN, inf or values beyond float32 (first: sample_id {first_bad})",
            "clean or drop those rows before adding the data set",
        )
    if not width:
        raise CurationError(f"{file.path} has no feature columns", "name the feature columns or add numeric columns")
    return width, fit


def _features(
    file: TabularFile, columns: list[str], rows: RowIndex
) -> Iterator[tuple[int, np.ndarray, np.ndarray, dict[str, int]]]:
    """Each batch's first row, sample ids, features as a float32 (rows, D) array (missing values as NaN) and
    missing values per column; a one-line error for a column that is not numeric. Ids that ascend are read
    beside the features (``RowIndex``)."""
    reread = rows.ids is None and rows.id_column is not None
    read = [*columns, rows.id_column] if reread and rows.id_column not in columns else columns
    lo = 0
    for batch in file.batches(read, numeric=columns):
        hi = lo + batch.num_rows
        ids = batch.column(rows.id_column).to_numpy().astype(np.int64) if reread else rows.sample_ids(lo, hi)
        if columns == ["features"] and is_list(batch.column("features").type):
            yield lo, ids, _list_values(batch.column("features").combine_chunks(), file.path), {}
            lo = hi
            continue
        parts, nulls = [], {}
        for name in columns:
            column = batch.column(name)
            if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
                raise CurationError(
                    f"feature column {name!r} in {file.path} is {column.type}, not numeric",
                    "give numeric feature columns only (use --feature-columns to pick them)",
                )
            nulls[name] = column.null_count
            parts.append(column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False))
        with np.errstate(over="ignore", invalid="ignore"):
            yield lo, ids, np.column_stack(parts).astype(np.float32), nulls
        lo = hi


def is_list(type_: pa.DataType) -> bool:
    return pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_fixed_size_list(type_)


def _list_values(array: pa.Array, path: Path) -> np.ndarray:
    """A list column's values as a float32 (rows, D) array; one-line errors for missing or ragged rows."""
    if array.null_count:
        raise CurationError(f"features in {path} have {array.null_count} missing rows", "fill or drop those rows")
    lengths = None if pa.types.is_fixed_size_list(array.type) else np.asarray(array.value_lengths())
    if lengths is not None and len(lengths) and (lengths != lengths[0]).any():
        raise CurationError(
            f"feature lists in {path} have different lengths", "give every row the same number of features"
        )
    values = array.flatten()
    if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        raise CurationError(f"features in {path} are {values.type}, not numeric", "give numeric features")
    if values.null_count:
        raise CurationError(f"features in {path} have missing values", "fill or drop those rows")
    with np.errstate(over="ignore", invalid="ignore"):
        return values.to_numpy(zero_copy_only=False).reshape(len(array), -1).astype(np.float32)
