"""Where versions come from: MNIST-1D at any N, scikit-learn digits, the drifting MNIST-1D stream
(``mnist1d-drift``, one chunk per call: curation.data.stream), a user's Parquet or CSV file, a folder of
images (one subfolder per class).

Each loader returns a table that already satisfies the contract, and a record of how it was made. A source
without a split gets a seeded, stratified one (``test_fraction`` of each class held out for testing);
tabular features of a file are standardized on read with statistics fitted on the train split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from curation.data.contract import build_table, read_manifest, sorted_order
from curation.data.images import column_batches, folder_batches, streamed_images
from curation.data.rows import RowIndex, scan, stratified
from curation.data.tabular import TabularFile, is_list, streamed
from curation.data.transforms import image_transform
from curation.errors import CurationError

BUILTIN = ("mnist1d", "digits", "mnist1d-drift")
TEST_FRACTION = 0.2


@dataclass
class Loaded:
    """A source's rows, checked against the contract, and how they were made (``source``, stored in the catalog).

    Sources built in memory give the whole ``table``; a file or a folder of images gives its ``schema`` and ``read``
    (its rows in sample-id order, a table at a time: ``curation.data.tabular``, ``curation.data.images``), so
    adding it holds one batch of features or images.
    """

    table: pa.Table | None
    source: dict = field(default_factory=dict)
    default_name: str = "dataset"
    schema: pa.Schema | None = None
    read: Callable[[], Iterable[pa.Table]] | None = None

    def __post_init__(self):
        if self.table is not None:
            self.schema = self.table.schema

    @property
    def rows(self) -> int:
        return read_manifest(self.schema)["rows"]

    def tables(self) -> Iterable[pa.Table]:
        """The rows, a table at a time."""
        return [self.table] if self.table is not None else self.read()

    def whole(self) -> pa.Table:
        """All rows as one table (in memory)."""
        if self.table is not None:
            return self.table
        return pa.concat_tables([t.replace_schema_metadata(self.schema.metadata) for t in self.read()])


def mnist1d(samples: int = 5000, seed: int = 42, train_split: float = 0.8) -> Loaded:
    """MNIST-1D from its own generator. The defaults give the published 4000/1000 benchmark."""
    if samples < 2:
        raise CurationError(f"--samples must be at least 2, got {samples}", "ask for more samples")
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed, args.train_split = int(samples), int(seed), float(train_split)
    data = make_dataset(args)
    n_train, n_test = len(data["y"]), len(data["y_test"])
    table = build_table(
        np.concatenate([data["x"], data["x_test"]]),
        np.concatenate([data["y"], data["y_test"]]),
        split=np.array(["train"] * n_train + ["test"] * n_test),
        feature_shape=[1, data["x"].shape[1]],
        what="mnist1d",
    )
    return Loaded(
        table,
        {"kind": "mnist1d", "samples": int(samples), "seed": int(seed), "train_split": float(train_split)},
        "mnist1d",
    )


def digits(seed: int = 0, test_fraction: float = TEST_FRACTION) -> Loaded:
    """scikit-learn's 8x8 digits (1797 samples), with a seeded stratified train/test split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    split = stratified_split(bunch.target, test_fraction, seed)
    table = build_table(bunch.data / 16.0, bunch.target, split=split, feature_shape=[1, 8, 8], what="digits")
    return Loaded(table, {"kind": "digits", "seed": int(seed), "test_fraction": float(test_fraction)}, "digits")


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """'train'/'test' per row of an array of labels (``curation.data.rows.stratified``)."""
    index = RowIndex.of(labels, "the labels")
    stratified(index, test_fraction, seed)
    return np.asarray(index.split_names, dtype=object)[index.codes]


def from_file(
    path: str | Path,
    label_column: str = "label",
    feature_columns: list[str] | None = None,
    id_column: str | None = None,
    split_column: str | None = None,
    test_fraction: float = TEST_FRACTION,
    seed: int = 0,
    image_size: list[int] | None = None,
    standardize: bool = True,
) -> Loaded:
    """A user's Parquet or CSV file: a label column (integers or class names), numeric feature columns (or one
    list column), or a binary ``image`` column of PNG/JPEG bytes; without a split column, a stratified split.
    Features and images are read a batch at a time (``curation.data.tabular``, ``curation.data.images``)."""
    path = Path(path)
    file = TabularFile(path)
    names = file.names
    for col in [label_column, id_column, split_column, *(feature_columns or [])]:
        if col is not None and col not in names:
            raise CurationError(
                f"column {col!r} not found in {path} (columns: {', '.join(names[:20])})",
                "name an existing column with --label-column / --feature-columns / --id-column",
            )
    reserved = {label_column, id_column, split_column}
    list_features = "features" in names and is_list(file.schema.field("features").type)
    images = feature_columns is None and "image" in names and _is_binary(file.schema.field("image").type)
    if images:
        feature_columns = ["image"]
    elif feature_columns is None:
        if list_features:
            feature_columns = ["features"]
        else:
            feature_columns = [c for c in names if c not in reserved and c not in ("sample_id", "split", "chunk")]
    if not feature_columns:
        raise CurationError(f"{path} has no feature columns besides the label", "add numeric feature columns")
    split_column = split_column or ("split" if "split" in names else None)
    id_read = id_column or ("sample_id" if "sample_id" in names else None)
    rows = scan(file, label_column, split_column, id_read, keep_ids=images)
    made_split = split_column is None
    if made_split:
        stratified(rows, test_fraction, seed)
    source = {
        "kind": "file",
        "path": str(path.resolve()),
        "label_column": label_column,
        "feature_columns": feature_columns,
        "id_column": id_column,
        "split_column": split_column,
    }
    if made_split:
        source |= {"test_fraction": float(test_fraction), "split_seed": int(seed)}
    if images:
        source |= {"image_size": image_size}
        if rows.ids is not None and sorted_order(rows.ids, str(path)) is not None:
            loaded = Loaded(_images_in_id_order(file, rows, image_size), source, path.stem)
        else:
            schema, read = streamed_images(column_batches(file), rows, image_size, str(path))
            loaded = Loaded(None, source, path.stem, schema=schema, read=read)
    else:
        schema, read = streamed(file, feature_columns, rows, standardize)
        loaded = Loaded(None, source | {"standardize": standardize}, path.stem, schema=schema, read=read)
    if made_split:
        rows.held_out(test_fraction, str(path))
    return loaded


def from_folder(
    path: str | Path, test_fraction: float = TEST_FRACTION, seed: int = 0, image_size: list[int] | None = None
) -> Loaded:
    """A folder of images, one subfolder per class (the subfolder's name is the class name), read a batch at a
    time (``curation.data.images``). Files are numbered 0..N-1 with the classes interleaved: a class's files, in
    sorted order, are spread evenly over the numbering (``interleaved``), so every row group, and every streamed
    epoch's shuffle buffer, holds each class in its share; numbered class by class, a row group would hold one."""
    path = Path(path)
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise CurationError(f"folder {path} has no class subfolders", "put each class's images in a subfolder")
    per_class = []
    for folder in classes:
        found = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not found:
            raise CurationError(f"class folder {folder} is empty", "add images to it or remove it")
        per_class.append(found)
    order = interleaved([len(found) for found in per_class])
    files = [f for found in per_class for f in found]
    files = [files[i] for i in order]
    labels = np.repeat([folder.name for folder in classes], [len(found) for found in per_class])[order]
    rows = RowIndex.of(labels, str(path))
    stratified(rows, test_fraction, seed)
    schema, read = streamed_images(folder_batches(path, files), rows, image_size, str(path))
    rows.held_out(test_fraction, str(path))
    source = {
        "kind": "image-folder",
        "path": str(path.resolve()),
        "test_fraction": float(test_fraction),
        "split_seed": int(seed),
        "image_size": image_size,
    }
    return Loaded(None, source, path.name, schema=schema, read=read)


def interleaved(counts: list[int]) -> np.ndarray:
    """The order that spreads classes of ``counts`` files (listed class by class) evenly: file i of a class of n
    goes to (i + 0.5) / n of the way, ties in class order."""
    classes = np.repeat(np.arange(len(counts)), counts)
    within = np.arange(len(classes)) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.lexsort((classes, (within + 0.5) / np.repeat(counts, counts)))


def _images_in_id_order(file: TabularFile, rows: RowIndex, size: list[int] | None) -> pa.Table:
    """A file of images whose sample ids do not ascend, read whole and sorted: there is no order to stream it in."""
    transform = image_transform(column_batches(file), rows.train(), size)  # checks, a batch at a time
    column = file.read(["image"]).column("image").combine_chunks().cast(pa.binary())
    return build_table(
        column,
        np.asarray(rows.class_names, dtype=object)[rows.labels],
        sample_ids=rows.ids,
        split=np.asarray(rows.split_names, dtype=object)[rows.codes],
        what=str(file.path),
        transform=transform,
        feature_shape=[transform["channels"], *transform["size"]],
    )


def _is_binary(type_: pa.DataType) -> bool:
    return pa.types.is_binary(type_) or pa.types.is_large_binary(type_)


def load(source: str, **options) -> Loaded:
    """Dispatch on the source name: 'mnist1d', 'digits', 'mnist1d-drift' (option ``step``: which chunk), a folder
    of images, or a file path."""

    def given(*keys):
        return {k: v for k, v in options.items() if k in keys and v is not None}

    if source == "mnist1d-drift":
        from curation.data.stream import drifting_mnist1d  # stream.py builds on this module

        return drifting_mnist1d(options.get("step") or 0, **given("samples", "seed"))
    if source == "mnist1d":
        return mnist1d(**given("samples", "seed", "train_split"))
    if source == "digits":
        return digits(**given("seed", "test_fraction"))
    if Path(source).is_dir():
        return from_folder(source, **given("test_fraction", "seed", "image_size"))
    return from_file(
        source,
        **given(
            "label_column",
            "feature_columns",
            "id_column",
            "split_column",
            "test_fraction",
            "seed",
            "image_size",
            "standardize",
        ),
    )
