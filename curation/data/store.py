"""The Parquet store: write a version atomically under its content hash, read it lazily.

Layout: ``<data_dir>/<name>/<md5>/part-00000.parquet, part-00001.parquet, ...``: a version is a folder of Parquet
shards of at most ``SHARD_GROUPS`` row groups each, named by DVC's hash of the folder (``<md5>.dir``: one content
hash over the shards). The folder is first written under ``<data_dir>/.staging/`` and renamed into place, so a
reader never sees half a version. Versions written before shards (one ``<md5>.parquet`` file, hashed as a file)
are read the same way.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.data import transforms
from curation.data.contract import check_name, read_manifest
from curation.data.transforms import features_numpy  # noqa: F401  (read features from a table read here)
from curation.errors import CurationError
from curation.faults import kill_point
from curation.files import move_into_place, temporary_path

ROW_GROUP_SIZE = 65_536  # rows of a row group of features, at most ...
GROUP_BYTES = 16 << 20  # ... and at most this many bytes of features (wide rows: fewer rows a group)
IMAGE_ROW_GROUP = 1_024  # encoded images are large rows: a group stays a few MB to tens of MB
SHARD_GROUPS = 16  # row groups in each shard file: at most 256 MB of features (a million MNIST-1D rows)
SHARD = "part-{:05d}.parquet"
STAGING = ".staging"


def file_md5(path: Path, block: int = 1 << 22) -> str:
    """md5 of the file's bytes: what DVC 3 records as the hash of a single-file output."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def content_md5(path: Path) -> str:
    """DVC 3's hash of a file or a folder output (a version's shards)."""
    if path.is_dir():
        return folder_md5({f.name: file_md5(f) for f in path.iterdir() if f.is_file()})
    return file_md5(path)


def folder_md5(files: dict[str, str]) -> str:
    """What DVC 3 records as the hash of a folder output, from its files' md5s (``{relative path: md5}``): the md5
    of the sorted JSON listing, suffixed ``.dir``."""
    listing = [{"md5": md5, "relpath": name} for name, md5 in sorted(files.items())]
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


class _HashingSink:
    """A file-like sink that md5-hashes the bytes as they are written (no second read of the file)."""

    def __init__(self, raw):
        self.raw = raw
        self.digest = hashlib.md5()
        self.closed = False

    def write(self, data) -> int:
        self.digest.update(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        self.closed = True


@dataclass(frozen=True)
class Staged:
    """A version written to the staging area (a folder of shards), not yet in the store or the catalog."""

    path: Path
    content_hash: str
    manifest: dict
    class_mixing: float = 1.0  # classes per row group over what shuffled rows would give (``class_mixing``)

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def stage(schema: pa.Schema, tables: Iterable[pa.Table], data_dir: Path) -> Staged:
    """Write the rows (tables of ``schema``, in sample-id order) as Parquet shards to the staging area and hash
    them as they are written; ``publish`` flushes them to disk as it moves the folder into place. Rows are
    written in row groups of ``group_rows(schema)`` rows and shards of ``SHARD_GROUPS`` groups, however the
    tables are cut: the same rows give the same bytes."""
    staging = data_dir / STAGING
    path = temporary_path(staging, "version")
    path.mkdir(parents=True)
    size, digests, shard, counts = group_rows(schema), {}, None, []
    try:
        for i, group in enumerate(recut(tables, schema, size)):
            if i % SHARD_GROUPS == 0:
                if shard is not None:
                    digests[shard.path.name] = shard.close()
                shard = _Shard(path / SHARD.format(i // SHARD_GROUPS), schema)
            shard.writer.write_table(group, row_group_size=size)
            counts.append(np.bincount(group.column("label").to_numpy()))
            kill_point(f"stage:row-group-{i}")
        if shard is None:  # no rows: one empty shard keeps the schema (ingest refuses this before)
            shard = _Shard(path / SHARD.format(0), schema)
        digests[shard.path.name] = shard.close()
        return Staged(path, folder_md5(digests), read_manifest(schema), class_mixing(counts))
    except BaseException:
        if shard is not None:
            shard.raw.close()
        shutil.rmtree(path, ignore_errors=True)
        raise


GROUPED_BY_LABEL = 0.5  # class mixing below which `data add` warns that the rows are grouped by label


def class_mixing(counts: list[np.ndarray]) -> float:
    """How well the row groups mix the classes, from each group's label counts: the classes a group holds beyond
    its first, over the number shuffled rows would give (1: as mixed as shuffled rows; near 0: one class a group,
    rows sorted by label). A streamed epoch mixes only a few row groups at a time, so low mixing biases batches."""
    if len(counts) < 2:
        return 1.0
    width = max(len(c) for c in counts)
    table = np.stack([np.pad(c, (0, width - len(c))) for c in counts])
    share = table.sum(0) / table.sum()
    rows = table.sum(1, keepdims=True)
    expected = (1 - (1 - share) ** rows).sum() - len(table)  # classes beyond the first in uniform draws
    found = np.count_nonzero(table, axis=1).sum() - len(table)
    return float(found / expected) if expected > 1e-9 else 1.0


class _Shard:
    """One shard file being written: a Parquet writer whose bytes are md5-hashed as they are written."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.path = path
        self.raw = open(path, "wb")  # noqa: SIM115 (closed by close, or by stage on an error)
        self.sink = _HashingSink(self.raw)
        # lz4: reads ~4x faster than zstd at ~10% more bytes; training reads far more often than it writes
        self.writer = pq.ParquetWriter(
            self.sink, schema, compression="lz4", use_dictionary=["split"], write_statistics=["sample_id"]
        )

    def close(self) -> str:
        """Finish the file; its md5."""
        self.writer.close()
        self.raw.close()
        return self.sink.digest.hexdigest()


def group_rows(schema: pa.Schema) -> int:
    """Rows in each row group of a version: a read of one group (training, scoring, ``take``) holds a few MB to
    tens of MB, whatever the width of a row (up to 64 features: ``ROW_GROUP_SIZE``)."""
    if "image" in schema.names:
        return IMAGE_ROW_GROUP
    width = schema.field("features").type.list_size * 4
    return max(1, min(ROW_GROUP_SIZE, GROUP_BYTES // width))


def recut(tables: Iterable[pa.Table | pa.RecordBatch], schema: pa.Schema, size: int) -> Iterator[pa.Table]:
    """The rows re-cut into tables of ``size`` rows (the last one shorter): row groups that do not depend on how
    the rows came in."""
    pending, held = [], 0
    for table in tables:
        table = pa.Table.from_batches([table]) if isinstance(table, pa.RecordBatch) else table
        table = table.replace_schema_metadata(schema.metadata)
        while table.num_rows:
            take = min(size - held, table.num_rows)
            pending.append(table.slice(0, take))
            table, held = table.slice(take), held + take
            if held == size:
                yield pa.concat_tables(pending).combine_chunks()
                pending, held = [], 0
    if held:
        yield pa.concat_tables(pending).combine_chunks()


def final_path(data_dir: Path, name: str, content_hash: str) -> Path:
    return data_dir / check_name(name) / content_hash.removesuffix(".dir")


def publish(folder: Path, target: Path) -> None:
    """Move a finished folder (a staged version, a score set's parts) to its final place (atomic, durable rename).
    A folder already there holds the same bytes (it is named by their hash and was moved there whole): the new
    copy is then dropped."""
    if target.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
        return
    move_into_place(folder, target)


def remove(path: Path) -> None:
    """Take a published version's bytes back (a folder of shards, or an earlier single file)."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def miscounted(path: Path, split: str | None, rows: int) -> CurationError:
    """The error for a version (or one split) whose file holds other than the rows its manifest counts."""
    where = f"the {split} split of {path}" if split else str(path)
    return CurationError(
        f"{where} does not hold the {rows} rows its manifest counts", "re-add the version with `curation data add`"
    )


class VersionReader:
    """Lazy access to one version: metadata up front, rows only when asked for.

    The version's row groups are numbered across its shards in order, and a row's position counts from the
    first row of the first shard, as if the shards were one file. Reads go through the files (not a memory map,
    whose touched pages would count as this process's memory); ``take`` reads only the row groups that hold the
    asked-for ids. Every read returns features as the model sees them: the version's transform
    (``curation.data.transforms``) is applied here, and an image version's ``image`` column is read and decoded
    when ``features`` are asked for.
    """

    OPEN = 8  # shard files held open at a time (a version may have thousands)

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.files = sorted(self.path.glob("part-*.parquet")) if self.path.is_dir() else [self.path]
        if not self.path.exists() or not self.files:
            raise CurationError(f"data {self.path} is missing", "run `dvc pull` or `dvc checkout` to restore it")
        self._open: dict[int, pq.ParquetFile] = {}
        try:
            self._metas = metas = [pq.read_metadata(f) for f in self.files]
        except (pa.ArrowException, OSError) as exc:
            raise CurationError(f"cannot read {self.path}: {exc}", "restore it with `dvc checkout`") from None
        schema = metas[0].schema.to_arrow_schema()
        self.manifest = read_manifest(schema)
        self.transform = self.manifest.get("transform")
        self.images = "image" in schema.names  # features are decoded from encoded images
        self.stored = "image" if self.images else "features"  # the column features are read from
        self.has_split = "split" in schema.names
        self.num_rows = sum(m.num_rows for m in metas)
        self.row_dtype = np.int32 if self.num_rows < 2**31 else np.int64  # of a row's position in the version
        self._ids: np.ndarray | None = None
        self._groups_at = [(k, g) for k, m in enumerate(metas) for g in range(m.num_row_groups)]  # (shard, group)
        self.group_starts = np.cumsum(  # the first row of each row group, then the row count
            [0] + [m.row_group(g).num_rows for m in metas for g in range(m.num_row_groups)]
        )

    def read_group(self, group: int, columns: list[str] | None = None) -> pa.Table:
        """One row group as stored (no transform, images not decoded)."""
        shard, local = self._groups_at[group]
        return self._shard(shard).read_row_group(local, columns=self._columns(columns))

    def _shard(self, shard: int) -> pq.ParquetFile:
        if shard not in self._open:
            if len(self._open) >= self.OPEN:
                del self._open[next(iter(self._open))]  # the least recently opened
            try:
                self._open[shard] = pq.ParquetFile(  # no map (see above); the footer read once, at start
                    self.files[shard], metadata=self._metas[shard], pre_buffer=False
                )
            except (pa.ArrowException, OSError) as exc:
                raise CurationError(
                    f"cannot read {self.files[shard]}: {exc}", "restore it with `dvc checkout`"
                ) from None
        return self._open[shard]

    @property
    def sample_ids(self) -> np.ndarray:
        """All sample ids (sorted): the one column kept in memory to map ids to rows."""
        if self._ids is None:
            [self._ids] = self.arrays(["sample_id"])
        return self._ids

    def rows_of(self, sample_ids: np.ndarray) -> np.ndarray:
        """Row positions of the given ids; a one-line error for ids not in this version."""
        ids = np.asarray(sample_ids, dtype=np.int64)
        pos = np.searchsorted(self.sample_ids, ids)
        pos_clipped = np.minimum(pos, self.num_rows - 1)
        missing = self.sample_ids[pos_clipped] != ids
        if missing.any():
            raise CurationError(
                f"{int(missing.sum())} sample ids are not in this version (first: {int(ids[missing][0])})",
                "select ids from this version only",
            )
        return pos_clipped

    def take(self, sample_ids, columns: list[str] | None = None) -> pa.Table:
        """Rows for the given ids, in the given order (duplicates allowed), reading only needed row groups."""
        return self.take_rows(self.rows_of(np.asarray(sample_ids)), columns)

    def take_rows(self, rows: np.ndarray, columns: list[str] | None = None) -> pa.Table:
        """The rows at these positions in the file, in the given order, reading only the row groups that hold them
        (no id lookup: a caller that knows the positions never loads every id)."""
        rows = np.asarray(rows, dtype=np.int64)
        groups = np.searchsorted(self.group_starts, rows, side="right") - 1
        needed = np.unique(groups)
        by_shard: dict[int, list[int]] = {}
        for g in needed.tolist():
            shard, local = self._groups_at[g]
            by_shard.setdefault(shard, []).append(local)
        part = pa.concat_tables(
            [self._shard(k).read_row_groups(local, columns=self._columns(columns)) for k, local in by_shard.items()]
        )
        # offsets of each needed group inside `part`
        sizes = self.group_starts[needed + 1] - self.group_starts[needed]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        local = offsets[np.searchsorted(needed, groups)] + (rows - self.group_starts[groups])
        return transforms.apply(part.take(pa.array(local, pa.int64())), self.transform)

    def split_ids(self, split: str = "train") -> np.ndarray:
        """Sample ids of one split; all ids when the version has no split column."""
        [ids] = self.arrays(["sample_id"], split)
        return ids

    def arrays(self, columns: list[str], split: str | None = None, rows: bool = False) -> list[np.ndarray]:
        """Scalar columns (ids, labels) of the version or one split (the whole version when it has no split column),
        each one numpy array filled a row group at a time: what is held is the arrays and one group, never Arrow's
        copy of the whole columns. With ``rows``, then each row's position in the file (``row_dtype``)."""
        split = split if self.has_split else None
        count = self.num_rows if split is None else (self.manifest.get("splits") or {}).get(split, 0)
        out, at = None, 0
        for table, where in self._groups(columns, split):
            parts = [table.column(c).to_numpy() for c in columns] + ([where.astype(self.row_dtype)] if rows else [])
            if out is None:
                out = [np.empty(count, dtype=part.dtype) for part in parts]
            if at + table.num_rows > count:
                break
            for array, part in zip(out, parts):
                array[at : at + len(part)] = part
            at += table.num_rows
        if at != count:
            raise miscounted(self.path, split, count)
        return out

    def read(self, columns: list[str] | None = None, split: str | None = None) -> pa.Table:
        """The whole version (or one split of it)."""
        return pa.concat_tables([table for table, _ in self._groups(columns, split)])  # a version has a row

    def groups(self, columns: list[str] | None = None, split: str | None = None) -> Iterator[pa.Table]:
        """The version (or one split of it) a row group at a time: a split's read holds that split and one group,
        never the rows of the other splits."""
        for table, _ in self._groups(columns, split):
            yield table

    def _groups(self, columns: list[str] | None, split: str | None) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """Each row group's rows (of one split) and their positions in the file."""
        if split is not None and not self.has_split:
            raise CurationError(
                f"version has no split column, cannot select split {split!r}", "add the data with a split column"
            )
        wanted = None if columns is None else list(dict.fromkeys([*columns, *(["split"] if split else [])]))
        for g in range(len(self._groups_at)):
            table = self.read_group(g, wanted)
            where = np.arange(self.group_starts[g], self.group_starts[g + 1])
            if split is not None:
                mask = pc.equal(table.column("split"), split)
                table, where = table.filter(mask), where[mask.to_numpy(zero_copy_only=False)]
            table = transforms.apply(table, self.transform)
            yield (table.select(columns) if columns else table), where

    def _columns(self, columns: list[str] | None) -> list[str] | None:
        """The stored columns that hold the asked-for ones (``features`` of an image version are ``image``)."""
        return None if columns is None else [self.stored if c == "features" else c for c in columns]
