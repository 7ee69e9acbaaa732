"""Per-row bookkeeping of a source added batch by batch: each row's class and split, 2 bytes a row.

``scan`` reads a file's label, split and id columns a batch at a time and keeps what the version's rows need
again when they are written: each row's class index (int8 up to 127 classes) and split code (int8). Ids that
ascend are read again beside the features and not held; ids that do not ascend are held (the rows must be
sorted), as they are when the caller asks for them. A CSV's three columns are read whole and its ids held:
its column types are inferred over the whole file, where a streamed CSV reader would fix them from its first
block. ``RowIndex.of`` makes the same from arrays in memory (a folder's class names). A source without a split
gets a seeded, stratified one (``stratified``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from curation.data.contract import INT32, SPLITS, check_ids, encode_labels, names_and_codes, split_codes
from curation.data.tabular import BATCH_ROWS, TabularFile
from curation.errors import CurationError

SPLIT_NAMES = sorted(SPLITS)  # a row's split code indexes this list until the names present are known


@dataclass
class RowIndex:
    """Each row's class index and split code, in the source's row order."""

    labels: np.ndarray  # class indices (int8 up to 127 classes, int16, int32)
    class_names: list  # index -> name
    codes: np.ndarray  # int8 indices into split_names
    split_names: list[str]  # the split names present, sorted
    ids: np.ndarray | None = None  # int64 sample ids when held; None: read from id_column, or 0..N-1
    id_column: str | None = None

    @classmethod
    def of(cls, labels: np.ndarray, what: str) -> RowIndex:
        """From a whole array of labels of any type, every row in 'train' (rows numbered 0..N-1)."""
        labels, class_names = encode_labels(np.asarray(labels), check_ids(None, len(labels), what), what)
        return cls(labels, class_names, np.zeros(len(labels), np.int8), ["train"])

    def __len__(self) -> int:
        return len(self.labels)

    def train(self, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Which of rows lo..hi are in the train split."""
        codes = self.codes[lo:hi]
        if "train" not in self.split_names:
            return np.zeros(len(codes), bool)
        return codes == self.split_names.index("train")

    def sample_ids(self, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Held ids of rows lo..hi, or their row numbers when there is no id column."""
        if self.ids is not None:
            return self.ids[lo:hi]
        if self.id_column is not None:
            raise ValueError("ascending ids are read beside the features, not held")
        return np.arange(lo, len(self) if hi is None else hi, dtype=np.int64)

    def split_counts(self) -> dict[str, int]:
        counts = np.bincount(self.codes, minlength=len(self.split_names))
        return {name: int(count) for name, count in zip(self.split_names, counts) if count}

    def held_out(self, test_fraction: float, what: str) -> None:
        """A one-line error when a split made at ingest left no test row."""
        if "test" not in self.split_counts():
            raise CurationError(
                f"{what} has too few rows to hold out a test fraction of {test_fraction}",
                "add more rows, raise --test-fraction, or give a split column",
            )


def scan(
    file: TabularFile,
    label_column: str,
    split_column: str | None,
    id_column: str | None,
    keep_ids: bool = False,
) -> RowIndex:
    """A file's rows read a batch at a time (its label, split and id columns only); without a split column every
    row is in 'train' until ``stratified`` splits it. One-line errors for missing, mistyped or unknown values."""
    path = file.path
    keep_ids = keep_ids or not file.parquet  # a CSV's ids are held: read again in blocks, their type could differ
    labels, splits = _Labels(label_column, path), _Splits(split_column, path)
    ids, last, ascending, lo = [], None, True, 0
    columns = [c for c in dict.fromkeys([label_column, split_column, id_column]) if c]
    for table in _tables(file, columns):
        hi = lo + table.num_rows
        batch_ids = np.arange(lo, hi, dtype=np.int64)
        if id_column:
            batch_ids = check_ids(table.column(id_column).to_numpy(), table.num_rows, str(path))
            if len(batch_ids) and ascending:
                ascending = bool((batch_ids[1:] > batch_ids[:-1]).all()) and (last is None or batch_ids[0] > last)
                last = batch_ids[-1]
            if keep_ids or not ascending:
                ids.append(batch_ids)
        labels.add(table.column(label_column), batch_ids)
        splits.add(table.column(split_column) if split_column else None, table.num_rows)
        lo = hi
    if lo == 0:
        raise CurationError(f"file {path} has no rows", "give a file with at least one row")
    codes, names = splits.finish()
    index = RowIndex(*labels.finish(), codes, names, id_column=id_column)
    if id_column and (keep_ids or not ascending):
        index.ids = _joined(ids, lo) if ascending else _reread_ids(file, id_column)
    return index


def _narrow(values: np.ndarray) -> np.ndarray:
    """Integers in the narrowest of int8, int16 and int32 that holds them (class indices: a byte a row, mostly)."""
    if not len(values):
        return values.astype(np.int8)
    low, high = int(values.min()), int(values.max())
    return values.astype(
        next(t for t in (np.int8, np.int16, np.int32) if np.iinfo(t).min <= low and high <= np.iinfo(t).max)
    )


def _tables(file: TabularFile, columns: list[str]) -> Iterator[pa.Table]:
    """The columns a batch at a time; a CSV's read whole first, as its types are inferred over the whole file
    (a streamed CSV reader fixes them from its first block), then cut."""
    if file.parquet:
        yield from file.batches(columns, numeric=[])
        return
    table = file.read(columns)
    for lo in range(0, table.num_rows, BATCH_ROWS):
        yield table.slice(lo, BATCH_ROWS)


def _joined(parts: list[np.ndarray], n: int) -> np.ndarray:
    """The parts in one array of their widest type."""
    out = np.empty(n, dtype=np.result_type(*parts))
    at = 0
    for part in parts:
        out[at : at + len(part)] = part
        at += len(part)
    return out


def _reread_ids(file: TabularFile, id_column: str) -> np.ndarray:
    """Every id, once a descent shows the rows must be sorted (they are then read whole)."""
    tables = _tables(file, [id_column])
    return np.concatenate([check_ids(t.column(id_column).to_numpy(), t.num_rows, str(file.path)) for t in tables])


class _Column:
    """A column seen a batch at a time: each batch's codes, and its missing values, refused once all are seen."""

    kind, fix = "", ""

    def __init__(self, column: str | None, path: Path):
        self.column, self.path = column, path
        self.parts: list[np.ndarray] = []
        self.nulls = 0

    def _codes(self) -> np.ndarray:
        if self.nulls:
            raise CurationError(
                f"{self.kind} column {self.column!r} in {self.path} has {self.nulls} missing values", self.fix
            )
        codes, self.parts = _joined(self.parts, sum(len(p) for p in self.parts)), []
        return codes


class _Labels(_Column):
    """Class indices of a label column seen a batch at a time: integers >= 0 are kept; names (strings) and
    negative integers are numbered in their sorted order once every batch is seen (``contract.encode_labels``)."""

    kind, fix = "label", "fill or drop those rows"

    def __init__(self, column: str, path: Path):
        super().__init__(column, path)
        self.names: dict[str, int] = {}  # a name's index in the order first seen
        self.strings: bool | None = None
        self.low = 0

    def add(self, values: pa.ChunkedArray, ids: np.ndarray) -> None:
        values = values.combine_chunks()
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        strings = pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
        if not (strings or pa.types.is_integer(values.type)):
            raise CurationError(
                f"label column {self.column!r} in {self.path} is {values.type}, not integers or names",
                "give class names (strings) or integer labels",
            )
        self.strings = strings
        self.nulls += values.null_count
        if self.nulls:
            return  # counted over the whole file, then refused
        if strings:
            codes, names = names_and_codes(values)
            seen = np.array([self.names.setdefault(name, len(self.names)) for name in names], np.int64)
            self.parts.append(_narrow(seen[codes]))
            return
        numbers = values.to_numpy()
        outside = (numbers < INT32.min) | (numbers > INT32.max)
        if outside.any():
            raise CurationError(
                f"{self.path} has labels outside int32 (first: sample_id {int(ids[np.flatnonzero(outside)[0]])})",
                "encode labels as small integers",
            )
        if len(numbers):
            self.low = min(self.low, int(numbers.min()))
        self.parts.append(_narrow(numbers))

    def finish(self) -> tuple[np.ndarray, list]:
        codes = self._codes()
        if self.strings:
            seen = list(self.names)
            order = np.argsort(seen)
            rank = np.empty(len(seen), codes.dtype)
            rank[order] = np.arange(len(seen))
            return rank[codes], [seen[i] for i in order]
        if self.low >= 0:
            return codes, list(range(int(codes.max()) + 1))
        values = np.unique(codes)
        return _narrow(np.searchsorted(values, codes)), [int(v) for v in values]


class _Splits(_Column):
    """Split codes of a split column seen a batch at a time (all 'train' without one)."""

    kind, fix = "split", "name every row's split 'train' or 'test'"

    def add(self, values: pa.ChunkedArray | None, n: int) -> None:
        if values is None:
            self.parts.append(np.full(n, SPLIT_NAMES.index("train"), np.int8))
            return
        self.nulls += values.null_count
        if self.nulls:
            return
        codes, names = split_codes(values, str(self.path))
        self.parts.append(np.array([SPLIT_NAMES.index(name) for name in names], np.int8)[codes])

    def finish(self) -> tuple[np.ndarray, list[str]]:
        codes = self._codes()
        present = np.flatnonzero(np.bincount(codes, minlength=len(SPLIT_NAMES)))
        if len(present) == len(SPLIT_NAMES):
            return codes, list(SPLIT_NAMES)
        return np.zeros_like(codes), [SPLIT_NAMES[int(present[0])]]


def stratified(index: RowIndex, test_fraction: float, seed: int) -> None:
    """Split the rows in place: each class's rows shuffled by ``seed``, a ``test_fraction`` of them (rounded, at
    least one row kept for training) held out. Deterministic for the same labels, fraction and seed. Too few
    rows may leave no test row: ``RowIndex.held_out`` says so once the rest of the data is checked."""
    if not 0 < test_fraction < 1:
        raise CurationError(f"--test-fraction must be between 0 and 1, got {test_fraction}", "give e.g. 0.2")
    test, train = SPLIT_NAMES.index("test"), SPLIT_NAMES.index("train")
    codes = np.full(len(index), train, np.int8)
    rng = np.random.default_rng(seed)
    for c in np.flatnonzero(np.bincount(index.labels)):  # the classes present, in sorted order
        rows = rng.permutation(np.flatnonzero(index.labels == c))
        codes[rows[: min(int(np.floor(test_fraction * len(rows) + 0.5)), len(rows) - 1)]] = test
    index.codes, index.split_names = codes, list(SPLIT_NAMES)
    if not (codes == test).any():
        index.codes, index.split_names = np.zeros_like(codes), ["train"]
