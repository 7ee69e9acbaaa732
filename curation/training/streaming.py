"""Splits read from disk while a model trains, for versions that do not fit in memory (``--data-path stream``).

A ``StreamedSplit`` holds only its sample ids and their rows in the version's file. An epoch's entries
(a plan's rows, repeats included) are sorted into file order, which groups them by Parquet row group; the
row groups are visited in a seeded random order, each group's entries shuffled and cut into the fewest equal
pieces of at most ``PIECE_ROWS`` rows and ``PIECE_BYTES`` of features, made as ``workers`` DataLoader processes
ask for them (a piece costs its worker a read of its whole row group, so a plan's few entries in a group are
one piece); the workers read and transform the pieces ahead of the training step (prefetch, pinned memory on a
GPU). The main process mixes ``BUFFER_PIECES`` pieces at a time (a bounded shuffle buffer) and cuts them
into batches, so every epoch trains on exactly the plan's multiset of rows, in an order that depends only
on (seed, epoch): a resumed run replays it. Memory holds the sorted entries (4 bytes each; 8 with weights)
and a few pieces, whatever N is.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from functools import partial
from itertools import islice

import numpy as np
import psutil
import pyarrow as pa
import torch

from curation.data import transforms
from curation.data.store import VersionReader

PIECE_ROWS = 65_536  # entries a worker reads and transforms per task, at most ...
PIECE_BYTES = 4 << 20  # ... and at most this many bytes of features (wide rows, images: fewer entries)
BUFFER_PIECES = 8  # pieces mixed together before they are cut into batches
PREFETCH = 4  # pieces each worker reads ahead
WATCH_SECONDS = 1.0  # how often a worker checks that the process it reads for is still there


def run_bounds(starts: np.ndarray, file_rows: np.ndarray) -> np.ndarray:
    """Where the rows of each row group begin in ``file_rows`` (ascending file positions), then the end: one entry
    a row group (``starts``: ``VersionReader.group_starts``), none a row."""
    return np.searchsorted(file_rows, starts)


def ordered_spans(bounds: np.ndarray, size: int) -> list[tuple[int, int, int]]:
    """The rows in order as (row group, start, stop) batches of at most ``size`` that never span two row groups
    (``bounds``: ``run_bounds``): the one partition of in-order passes (evaluation, scoring, in memory, streamed or
    sharded on Dask), so their results agree bit for bit."""
    return [
        (int(group), lo, min(lo + size, int(bounds[group + 1])))
        for group in np.flatnonzero(np.diff(bounds))
        for lo in range(int(bounds[group]), int(bounds[group + 1]), size)
    ]


def worker_loader(dataset: torch.utils.data.Dataset, workers: int, **options) -> torch.utils.data.DataLoader:
    """A DataLoader of single items whose ``workers`` processes start from a fork server (clean, whatever threads
    this process runs: a Prefect server, MLflow) and end when this process ends, however it ends."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        num_workers=workers,
        multiprocessing_context="forkserver" if workers else None,
        worker_init_fn=partial(_end_with, os.getpid()) if workers else None,
        **options,
    )


def _end_with(pid: int, _worker: int) -> None:
    """In a worker: exit once the process ``pid`` is gone or a zombie. A worker's parent is the fork server,
    which outlives a killed process (its workers hold its liveness pipe), so torch's watchdog, which watches the
    parent, never fires: the workers of a run killed by the kernel (out of memory) or by kill -9 would stay,
    holding their memory. psutil tells the process from a later one with its pid by its start time since
    boot, which a change of the system clock does not move."""
    try:
        reading = psutil.Process(pid)
    except psutil.NoSuchProcess:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(WATCH_SECONDS)
            try:
                if reading.is_running() and reading.status() != psutil.STATUS_ZOMBIE:
                    continue
            except psutil.NoSuchProcess:
                pass
            os._exit(1)

    threading.Thread(target=watch, name="end-with-reader", daemon=True).start()


class _Pieces(torch.utils.data.Dataset):
    """A piece is (row group, row offsets in it); a worker reads it with its own reader of the version, opened
    there (Parquet readers do not pickle) and keeps the last row group it read, since pieces of a group follow."""

    def __init__(self, path: str):
        self.path = path
        self._reader: VersionReader | None = None
        self._group: tuple[int, pa.Table] | None = None

    def __getitem__(self, piece: tuple[int, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        group, offsets = piece
        if self._reader is None:
            self._reader = VersionReader(self.path)
        if self._group is None or self._group[0] != group:
            self._group = (group, self._reader.read_group(group, ["label", "features"]))
        table = transforms.apply(self._group[1].take(pa.array(offsets, pa.int64())), self._reader.transform)
        features = transforms.features_numpy(table)
        return torch.from_numpy(np.require(features, np.float32, "CW")), torch.from_numpy(
            table.column("label").to_numpy().astype(np.int64)
        )


class _Queue(torch.utils.data.Sampler):
    """The pieces of the pass under way; a persistent loader reads whatever was queued last."""

    def __init__(self):
        self.pieces: Iterable = []  # a list, or a generator that makes them as they are asked for

    def __iter__(self):
        return iter(self.pieces)


class StreamedSplit:
    """One split read from the version's file on demand; the same interface as ``training.data.Split``."""

    def __init__(
        self,
        reader: VersionReader,
        name: str,
        shape: tuple[int, ...],
        device: torch.device,
        workers: int,
        shard: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        """The whole split ``name``, or a ``shard`` of it: (sample ids, their rows in the file), both sorted."""
        self.name, self.shape, self.device, self.workers = name, shape, device, workers
        self.reader = reader
        if shard is None:
            self.sample_ids, self.file_rows = reader.arrays(["sample_id"], name, rows=True)
        else:
            self.sample_ids, self.file_rows = shard
        self._starts = reader.group_starts
        self._piece_rows = max(1, min(PIECE_ROWS, PIECE_BYTES // (4 * int(np.prod(shape)))))
        self._loader: tuple[torch.utils.data.DataLoader, _Queue] | None = None
        self._pass = 0  # the pass under way: starting another one ends it

    def __len__(self) -> int:
        return len(self.sample_ids)

    def batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels of any rows, read in this process (random access; epochs use ``batches``)."""
        table = self.reader.take_rows(self.file_rows[np.asarray(rows)], ["label", "features"])
        x = torch.from_numpy(np.require(transforms.features_numpy(table), np.float32, "CW"))
        y = torch.from_numpy(table.column("label").to_numpy().astype(np.int64))
        return self._to_device(x, y)

    def batches(
        self, rows: np.ndarray, weights: np.ndarray | None, size: int, seed: list[int]
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None, torch.Tensor, torch.Tensor]]:
        """An epoch over ``rows`` (repeats kept) in batches of ``size``: (rows, weights, features, labels)."""
        rng = np.random.default_rng(seed)  # mixes each buffer
        shuffle = np.random.default_rng([*seed, 1])  # orders the row groups and the entries in each
        weights = None if weights is None else np.asarray(weights, dtype=np.float32)
        small = np.int32 if max(len(rows), len(self)) < 2**31 else np.int64  # holds a position or a row
        if weights is None:  # only the rows matter: sorted, an entry is its rank
            rows, order = np.sort(np.asarray(rows).astype(small)), None
        else:  # an entry is its position, to find its weight
            order = np.argsort(rows, kind="stable").astype(small)
        ranked = rows if order is None else rows[order].astype(small)  # the entries in file order (rows ascend in it)
        bounds = np.searchsorted(ranked, run_bounds(self._starts, self.file_rows))  # each row group's run of them
        sent = deque()  # the entries of each piece handed to the readers, in the order they read them

        def pieces() -> Iterator[tuple[int, np.ndarray]]:
            """The row groups in a seeded order, each's entries shuffled and cut into pieces, made as the readers
            ask for them: an epoch holds its sorted entries and the pieces in flight, 4 to 8 bytes an entry."""
            for group in shuffle.permutation(np.flatnonzero(np.diff(bounds))):
                lo, hi = int(bounds[group]), int(bounds[group + 1])
                shuffled = lo + shuffle.permutation(hi - lo)
                for part in np.array_split(shuffled, -(-len(shuffled) // self._piece_rows)):
                    sent.append(part if order is None else order[part])
                    yield int(group), (self.file_rows[ranked[part]] - self._starts[group]).astype(np.int32)

        empty = np.zeros(0, np.int64)
        carry = (empty, torch.zeros((0, *self.shape)).flatten(1), torch.zeros(0, dtype=torch.int64))
        read = self._read(pieces())
        while buffer := list(islice(read, BUFFER_PIECES)):
            parts = [sent.popleft() for _ in buffer]
            xs, ys = zip(*buffer)
            index, x, y = np.concatenate(parts), torch.cat(xs), torch.cat(ys)
            mix = torch.from_numpy(rng.permutation(len(index)))
            index, x, y = (
                np.concatenate([carry[0], index[mix.numpy()]]),
                torch.cat([carry[1], x[mix]]),
                torch.cat([carry[2], y[mix]]),
            )
            end = len(index) - len(index) % size
            yield from self._cut(rows, weights, index[:end], x[:end], y[:end], size)
            carry = (index[end:], x[end:], y[end:])
        yield from self._cut(rows, weights, *carry, size)  # the last, short batch

    def _cut(self, rows, weights, index, x, y, size: int) -> Iterator:
        """Batches of ``size`` entries: (their rows, weights, features, labels)."""
        for at in range(0, len(index), size):
            pick = index[at : at + size]
            yield (
                rows[pick].astype(np.int64),
                None if weights is None else weights[pick],
                *self._to_device(x[at : at + size], y[at : at + size]),
            )

    def in_order(self, size: int) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
        """Every row in order, in batches of at most ``size`` (a batch never spans two row groups)."""
        spans = ordered_spans(run_bounds(self._starts, self.file_rows), size)
        pieces = [(group, self.file_rows[lo:hi] - self._starts[group]) for group, lo, hi in spans]
        for (_, lo, hi), (x, y) in zip(spans, self._read(pieces)):
            yield (np.arange(lo, hi), *self._to_device(x, y))

    def close(self) -> None:
        """Stop the worker processes (they also stop when this split is garbage-collected)."""
        self._loader = None

    def _read(self, pieces: list) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The pieces, read by the workers in the order given. One persistent loader serves every pass over
        this split, one pass at a time: a pass started while another is under way ends the earlier one."""
        if self._loader is None:
            queue = _Queue()
            workers = self.workers
            loader = worker_loader(
                _Pieces(str(self.reader.path)),
                workers,
                sampler=queue,
                pin_memory=self.device.type == "cuda",
                persistent_workers=workers > 0,
                prefetch_factor=PREFETCH if workers else None,
            )
            self._loader = (loader, queue)
        loader, queue = self._loader
        self._pass += 1
        mine, queue.pieces = self._pass, pieces
        pieces_read = iter(loader)
        try:
            while True:
                if self._pass != mine:  # checked before reading: the newer pass keeps all its pieces
                    raise RuntimeError(f"a pass over the {self.name} split was ended by another one")
                piece = next(pieces_read, None)
                if piece is None:
                    return
                yield piece
        finally:
            if self._pass == mine:
                queue.pieces = []  # a finished or abandoned pass holds nothing

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.reshape(len(x), *self.shape)
        if self.device.type == "cuda":
            return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        return x, y
