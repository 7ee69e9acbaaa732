"""A user's Parquet or CSV file, read a batch at a time: adding it holds one batch of features, whatever its size.

``TabularFile`` checks the file and reads a few columns whole (labels, ids, split) or any columns in batches
of ``BATCH_ROWS``. ``streamed`` makes a ``Loaded`` of a tabular file in two passes over its features: the
first checks them (numeric, no missing values, finite in float32) and fits the standardization on the train
split; the second, run when the version is written, builds the contract's rows batch by batch. What stays
in memory is per-row bookkeeping (class index, id, split: 13 bytes a row). A file whose sample ids do not
ascend is sorted in memory (its features read whole), as there is no order to stream it in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from curation.data.contract import (
    check_ids,
    encode_labels,
    manifest,
    rows_table,
    sorted_order,
    split_codes,
    split_counts,
    train_rows,
    with_manifest,
)
from curation.data.transforms import StandardizeFit
from curation.errors import CurationError

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

    def batches(self, columns: list[str], rows: int = BATCH_ROWS) -> Iterator[pa.Table]:
        """The columns, at most ``rows`` rows and about ``BATCH_BYTES`` at a time (a CSV a block of text at a
        time, its columns read as float64: features)."""
        with self._errors():
            if self.parquet:
                parquet = pq.ParquetFile(self.path, pre_buffer=False, buffer_size=READ_BUFFER)  # no cache: bounded
                for batch in parquet.iter_batches(batch_size=_batch_rows(parquet, columns, rows), columns=columns):
                    yield pa.Table.from_batches([batch])
                return
            options = pacsv.ConvertOptions(include_columns=columns, column_types=dict.fromkeys(columns, pa.float64()))
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
    file: TabularFile,
    feature_columns: list[str],
    labels: np.ndarray,
    sample_ids: np.ndarray | None,
    split: np.ndarray,
    standardize: bool,
) -> tuple[pa.Schema, Callable[[], Iterator[pa.Table]]]:
    """The version's schema (with its manifest) and a reader of its rows in sample-id order, a table at a time."""
    what = str(file.path)
    n = len(labels)
    sample_ids = check_ids(sample_ids, n, what)
    labels, class_names = encode_labels(labels, sample_ids, what)
    order = sorted_order(sample_ids, what)
    codes, names = split_codes(split, what)
    train = train_rows(codes, names)
    width, fit = _check_features(file, feature_columns, sample_ids, train)
    schema = rows_table(sample_ids[:0], labels[:0], np.zeros((0, width), np.float32), codes[:0], names).schema
    transform = fit.transform() if standardize else None
    shaped = manifest(schema, [width], class_names, transform, labels=labels, splits=split_counts(codes, names))

    def read() -> Iterator[pa.Table]:
        if order is None:
            lo = 0
            for values, _ in _features(file, feature_columns):
                hi = lo + len(values)
                yield rows_table(sample_ids[lo:hi], labels[lo:hi], values, codes[lo:hi], names)
                lo = hi
            return
        values = np.concatenate([values for values, _ in _features(file, feature_columns)])[order]
        for lo in range(0, n, BATCH_ROWS):
            rows = order[lo : lo + BATCH_ROWS]
            yield rows_table(sample_ids[rows], labels[rows], values[lo : lo + BATCH_ROWS], codes[rows], names)

    return with_manifest(schema, shaped), read


def _check_features(
    file: TabularFile, columns: list[str], sample_ids: np.ndarray, train: np.ndarray
) -> tuple[int, StandardizeFit]:
    """One pass over the features: their width, and the standardization fitted on the train rows; one-line
    errors (with totals over the whole file) for missing or non-finite values."""
    fit, lo, width, bad, first_bad = StandardizeFit(), 0, None, 0, None
    missing = dict.fromkeys(columns, 0)
    for values, nulls in _features(file, columns):
        hi = lo + len(values)
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
                first_bad = int(sample_ids[lo + np.flatnonzero(~finite)[0]])
        fit.add(values[finite & train[lo:hi]])
        lo = hi
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


def _features(file: TabularFile, columns: list[str]) -> Iterator[tuple[np.ndarray, dict[str, int]]]:
    """Each batch's features as a float32 (rows, D) array (missing values as NaN), and its missing values per
    column; a one-line error for a column that is not numeric."""
    for batch in file.batches(columns):
        if columns == ["features"] and is_list(batch.column("features").type):
            yield _list_values(batch.column("features").combine_chunks(), file.path), {}
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
            yield np.column_stack(parts).astype(np.float32), nulls


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
