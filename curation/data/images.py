"""Image sources read a batch at a time: a folder of class subfolders, or a Parquet file's binary ``image``
column. Adding one holds a batch of encoded images, whatever their number.

``streamed_images`` makes the version's schema and reader from ``batches()`` (encoded images and where each
came from, ``BATCH_IMAGES`` at a time) in two passes: ``transforms.image_transform`` checks that every image
decodes (one size unless resized) and fits the normalization on the train split; the rows are built batch by
batch when the version is written. The encoded bytes are stored, decoded on read. What stays in memory is
per-row bookkeeping (``curation.data.rows``: class index, split, id) and, for a folder, the file list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from curation.data.contract import manifest, rows_table, with_manifest
from curation.data.tabular import TabularFile
from curation.data.transforms import image_transform
from curation.errors import CurationError

if TYPE_CHECKING:
    from curation.data.rows import RowIndex

BATCH_IMAGES = 1_024

Batches = Callable[[], Iterator[tuple[list[bytes], list[str]]]]


def folder_batches(root: Path, files: Sequence[Path]) -> Batches:
    """The files' bytes, ``BATCH_IMAGES`` at a time, each named by its path under ``root``."""

    def batches() -> Iterator[tuple[list[bytes], list[str]]]:
        for lo in range(0, len(files), BATCH_IMAGES):
            part = files[lo : lo + BATCH_IMAGES]
            yield [f.read_bytes() for f in part], [str(f.relative_to(root)) for f in part]

    return batches


def column_batches(file: TabularFile, column: str = "image") -> Batches:
    """A binary column's values, ``BATCH_IMAGES`` rows at a time, each named by its row."""

    def batches() -> Iterator[tuple[list[bytes], list[str]]]:
        lo = 0
        for table in file.batches([column], rows=BATCH_IMAGES):
            values = table.column(column).combine_chunks()
            if values.null_count:
                raise CurationError(
                    f"image column in {file.path} has missing images (first in row {lo + _first_null(values)})",
                    "drop those rows",
                )
            yield values.to_pylist(), [f"in row {lo + i} of {file.path}" for i in range(len(values))]
            lo += len(values)

    return batches


def _first_null(values: pa.Array) -> int:
    return int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])


def streamed_images(
    batches: Batches, rows: RowIndex, size: Sequence[int] | None, what: str
) -> tuple[pa.Schema, Callable[[], Iterator[pa.Table]]]:
    """The version's schema (with its manifest) and a reader of its rows, a batch of images at a time. The
    rows come in ``batches()`` order, so their held ids must ascend (none held: 0..N-1)."""
    transform = image_transform(batches, rows.train(), size)
    names = rows.split_names
    schema = rows_table(np.zeros(0, np.int64), rows.labels[:0], pa.array([], pa.binary()), rows.codes[:0], names).schema
    shape = [transform["channels"], *transform["size"]]
    shaped = manifest(schema, shape, rows.class_names, transform, labels=rows.labels, splits=rows.split_counts())

    def read() -> Iterator[pa.Table]:
        lo = 0
        for blobs, _ in batches():
            hi = lo + len(blobs)
            yield rows_table(
                rows.sample_ids(lo, hi), rows.labels[lo:hi], pa.array(blobs, pa.binary()), rows.codes[lo:hi], names
            )
            lo = hi

    return with_manifest(schema, shaped), read
