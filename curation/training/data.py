"""The data a run trains and evaluates on: a version's train and test splits, looked up by sample id.

A split is held in memory (``Split``: one tensor, a batch is one ``index_select``) when it fits, else read
from disk while training (``training.streaming.StreamedSplit``); ``data_path`` chooses (auto: per split, by
the memory it would take against the memory left to the process, a cgroup's limit included). Both answer
``batch(rows)``, ``batches(...)`` (an epoch) and ``in_order(size)``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from curation.choices import DataPath
from curation.data.store import VersionReader, features_numpy, miscounted
from curation.errors import CurationError
from curation.memory import available_bytes
from curation.training.streaming import StreamedSplit, ordered_spans, run_bounds, worker_loader

COLUMNS = ["sample_id", "label", "features"]
MEMORY_SHARE = 0.5  # data_path auto: a split bigger than this share of available memory is streamed ...
RUN_RESERVE = 512 << 20  # ... counted after this much is kept for the rest of a run (model, batches, read buffers)
WORKER_BYTES = 384 << 20  # a reader process: torch imported, a row group and its pieces read ahead (~350 MB measured)
DEVICE_SHARE = 0.5  # keep a split on the GPU when it takes at most this share of free GPU memory
DECODE_CHUNK = 256  # images a decoding worker reads and decodes per task
WORKER_START_SECONDS = 2.0  # starting 2 decoding workers (forkserver processes importing torch): 2.2 s measured
CHECK_IDS = 1 << 20  # plan ids checked against the train split at a time


@dataclass
class Split:
    """One split in memory: sorted sample ids, features shaped (N, *feature_shape), int64 labels, and each row's
    Parquet row group in the version's file (none: rows from arrays or several files)."""

    name: str
    sample_ids: np.ndarray
    features: torch.Tensor
    labels: torch.Tensor
    device: torch.device
    bounds: np.ndarray | None = None  # streaming.run_bounds of its rows in the version's file (None: one group)

    def __len__(self) -> int:
        return len(self.sample_ids)

    def batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels of these rows, on the training device."""
        index = torch.from_numpy(rows).to(self.features.device)
        if self.features.device == self.device:
            return self.features.index_select(0, index), self.labels.index_select(0, index)
        # too big for the GPU: gathered straight into pinned memory, then copied asynchronously
        x = torch.empty((len(rows), *self.features.shape[1:]), dtype=self.features.dtype, pin_memory=True)
        y = torch.empty(len(rows), dtype=self.labels.dtype, pin_memory=True)
        torch.index_select(self.features, 0, index, out=x)
        torch.index_select(self.labels, 0, index, out=y)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def batches(
        self, rows: np.ndarray, weights: np.ndarray | None, size: int, seed: list[int]
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None, torch.Tensor, torch.Tensor]]:
        """An epoch over ``rows`` (repeats kept), shuffled from ``seed``, in batches of ``size``:
        (rows, weights, features, labels)."""
        order = np.random.default_rng(seed).permutation(len(rows))
        rows, weights = rows[order], (None if weights is None else weights[order])
        for lo in range(0, len(rows), size):
            part = rows[lo : lo + size]
            yield part, None if weights is None else weights[lo : lo + size], *self.batch(part)

    def in_order(self, size: int) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
        """Every row in order, in batches of at most ``size`` that never span two row groups, as streamed and
        sharded passes cut them: (rows, features, labels)."""
        bounds = np.array([0, len(self)]) if self.bounds is None else self.bounds
        for _, lo, hi in ordered_spans(bounds, size):
            rows = np.arange(lo, hi)
            yield rows, *self.batch(rows)

    def close(self) -> None:
        """Nothing to release (a streamed split stops its workers)."""


@dataclass
class TrainingData:
    """A version's train split (what plans index) and test split (what every epoch is evaluated on)."""

    reader: VersionReader
    version_id: int
    feature_shape: tuple[int, ...]
    train: Split | StreamedSplit
    test: Split | StreamedSplit

    @classmethod
    def load(
        cls,
        reader: VersionReader,
        version_id: int,
        feature_shape,
        device: torch.device,
        workers: int = 0,
        data_path: DataPath | str = DataPath.auto,
    ) -> TrainingData:
        """Both splits, in memory or streamed (``data_path``); images are decoded by ``workers`` processes."""
        shape = tuple(int(s) for s in feature_shape)
        splits = reader.manifest.get("splits") or {}
        for name in ("train", "test"):
            if not splits.get(name):
                raise CurationError(
                    f"version {version_id} has no {name!r} split (splits: {splits or 'none'})",
                    "add the data with a split column holding 'train' and 'test' rows",
                )
        # the test split first: the train split's path and reader processes then plan with what it left
        test = _split(reader, "test", splits["test"], shape, device, workers, DataPath(data_path))
        train = _split(reader, "train", splits["train"], shape, device, workers, DataPath(data_path))
        return cls(reader, version_id, shape, train, test)

    @classmethod
    def of_arrays(
        cls,
        train: tuple[np.ndarray, np.ndarray],
        test: tuple[np.ndarray, np.ndarray],
        device: torch.device,
        version_id: int = 0,
    ) -> TrainingData:
        """In-memory data, no store: (features, labels) per split, sample ids 0..N-1 (train) and N.. (test).
        Benchmarks and device checks use it; ``train_rows`` then refuses unknown ids without naming the version."""
        (xtr, ytr), (xte, yte) = train, test
        shape = tuple(int(s) for s in np.shape(xtr)[1:])
        splits = [
            _in_memory(n, np.arange(lo, lo + len(y)), x, y, device)
            for n, lo, x, y in (("train", 0, xtr, ytr), ("test", len(ytr), xte, yte))
        ]
        return cls(None, version_id, shape, *splits)

    @property
    def streamed(self) -> bool:
        """Whether the train split is read from disk while training."""
        return isinstance(self.train, StreamedSplit)

    @property
    def placement(self) -> dict:
        """Where each split lives (``memory`` or ``stream``) and how many processes read the streamed train split:
        what ``data_path`` auto chose, recorded with the run."""
        return {
            "train": "stream" if self.streamed else "memory",
            "test": "stream" if isinstance(self.test, StreamedSplit) else "memory",
            "stream_readers": self.train.workers if self.streamed else 0,
        }

    def close(self) -> None:
        """Stop a streamed split's worker processes."""
        self.train.close()
        self.test.close()

    def train_rows(self, sample_ids: np.ndarray) -> np.ndarray:
        """Rows in the train split of these ids; a one-line error for ids outside the version or its train split."""
        ids = np.asarray(sample_ids, dtype=np.int64)
        known = self.train.sample_ids
        pos = np.minimum(np.searchsorted(known, ids), len(known) - 1)
        bad = [ids[:0]]  # checked CHECK_IDS at a time: no temporaries the size of the plan beside the positions
        for lo in range(0, len(ids), CHECK_IDS):
            part = ids[lo : lo + CHECK_IDS]
            bad.append(part[known[pos[lo : lo + CHECK_IDS]] != part])
        bad = np.concatenate(bad)
        if len(bad):
            if self.reader is None:
                raise CurationError(
                    f"{len(bad)} sample ids are not in the train split (first: {int(bad[0])})",
                    "train only on ids of the train split",
                )
            self.reader.rows_of(bad)  # raises for ids that are not in the version at all
            raise CurationError(
                f"{len(bad)} sample ids are in the test split of version {self.version_id} (first: {int(bad[0])})",
                "train only on ids of the train split",
            )
        return pos


class _Decoded(torch.utils.data.Dataset):
    """Chunks of sample ids, each read and decoded by its own reader in a DataLoader worker process."""

    def __init__(self, path, chunks: list[np.ndarray]):
        self.path, self.chunks, self._reader = path, chunks, None

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> pa.Table | CurationError:
        if self._reader is None:  # one reader per worker process, opened there
            self._reader = VersionReader(self.path)
        try:
            return self._reader.take(self.chunks[i], COLUMNS)
        except CurationError as exc:  # returned, to be raised as one line (torch wraps what a worker raises)
            return exc


def _as_is(table: pa.Table) -> pa.Table:
    return table


def split_tables(reader: VersionReader, name: str, workers: int = 0) -> Iterator[pa.Table]:
    """One split's ``COLUMNS``, a piece at a time in sample-id order: a row group each, or (an image version
    with ``workers``) chunks of images decoded in that many processes, unless the first chunk, decoded here,
    says the rest decodes here in less time than the workers take to start."""
    if not reader.images or workers == 0:
        yield from reader.groups(COLUMNS, split=name)
        return
    ids = reader.split_ids(name)
    first, *rest = np.array_split(ids, max(1, -(-len(ids) // DECODE_CHUNK)))
    tick = time.perf_counter()
    table = reader.take(first, COLUMNS)
    here = not rest or (time.perf_counter() - tick) * len(rest) < WORKER_START_SECONDS
    yield table
    if here:
        yield from (reader.take(chunk, COLUMNS) for chunk in rest)
        return
    for decoded in worker_loader(_Decoded(reader.path, rest), workers, collate_fn=_as_is):
        if isinstance(decoded, CurationError):
            raise decoded
        yield decoded


def _split(
    reader: VersionReader,
    name: str,
    rows: int,
    shape: tuple[int, ...],
    device: torch.device,
    workers: int,
    data_path: DataPath,
) -> Split | StreamedSplit:
    """A split in memory, or streamed: as asked, or (auto) when it would take over ``MEMORY_SHARE`` of the
    available memory less ``RUN_RESERVE``. Of ``workers`` it starts as many as the memory left holds."""
    need, available = rows * int(np.prod(shape)) * 4, _available()
    if data_path == DataPath.auto:
        data_path = DataPath.stream if need > MEMORY_SHARE * (available - RUN_RESERVE) else DataPath.memory
    if data_path == DataPath.memory and need > 0.9 * available:
        raise CurationError(
            f"the {name} split needs {need / 2**30:.1f} GiB in memory, {available / 2**30:.1f} GiB are available",
            "train with --data-path stream (or auto)",
        )
    if data_path == DataPath.stream:  # the test split is read in this process: no idle worker processes
        return StreamedSplit(reader, name, shape, device, _workers(workers, available) if name == "train" else 0)
    return _load_split(reader, name, rows, shape, device, _workers(workers, available - need))


def _available() -> int:
    """The memory this process plans with: what is available, shared equally by the ``--nproc`` training ranks
    (all on this machine: ``parallel`` starts them together, and each sees the same free memory)."""
    return available_bytes() // int(os.environ.get("WORLD_SIZE", "1"))


def _workers(workers: int, free: int) -> int:
    """As many of ``workers`` processes as ``free`` bytes hold after ``RUN_RESERVE``, at ``WORKER_BYTES`` each:
    under a tight limit (a container's) a run reads in fewer processes instead of being killed."""
    return int(min(workers, max(0, (free - RUN_RESERVE) // WORKER_BYTES)))


def _load_split(
    reader: VersionReader, name: str, rows: int, shape: tuple[int, ...], device: torch.device, workers: int
) -> Split:
    """The split's features filled into one array a piece at a time: its size in memory, plus one piece."""
    features = np.empty((rows, int(np.prod(shape))), dtype=np.float32)
    ids, labels, at = [], [], 0
    for table in split_tables(reader, name, workers):
        if at + table.num_rows > rows:
            break
        features[at : at + table.num_rows] = features_numpy(table)
        at += table.num_rows
        ids.append(table.column("sample_id").to_numpy())
        labels.append(table.column("label").to_numpy())
    if at != rows:
        raise miscounted(reader.path, name, rows)
    ids = np.concatenate(ids)
    if len(ids) > 1 and (np.diff(ids) <= 0).any():
        raise CurationError(
            f"sample ids of {reader.path} are not sorted", "re-add the version with `curation data add`"
        )
    split = _in_memory(name, ids, features.reshape(rows, *shape), np.concatenate(labels), device)
    split.bounds = run_bounds(reader.group_starts, reader.rows_of(ids))
    return split


def _in_memory(name: str, ids: np.ndarray, features: np.ndarray, labels: np.ndarray, device: torch.device) -> Split:
    """A split from arrays: float32 features and int64 labels, on the GPU when they fit its share of free memory."""
    features = torch.from_numpy(np.require(features, dtype=np.float32, requirements="CW"))
    labels = torch.from_numpy(np.asarray(labels).astype(np.int64))
    if device.type == "cuda" and features.nbytes <= DEVICE_SHARE * torch.cuda.mem_get_info(device)[0]:
        features, labels = features.to(device), labels.to(device)
    return Split(name, ids, features, labels, device)
