"""Where versions come from: MNIST-1D at any N, scikit-learn digits, the drifting MNIST-1D stream
(``mnist1d-drift``, one chunk per call: curation.data.stream), a user's Parquet or CSV file.

Each loader returns a table that already satisfies the contract, and a record of how it was made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from curation.data.contract import build_table
from curation.errors import CurationError

BUILTIN = ("mnist1d", "digits", "mnist1d-drift")


@dataclass
class Loaded:
    table: pa.Table
    source: dict = field(default_factory=dict)  # kind and arguments, stored in the catalog
    default_name: str = "dataset"


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
    return Loaded(table, {"kind": "mnist1d", "samples": int(samples), "seed": int(seed),
                          "train_split": float(train_split)}, "mnist1d")


def digits(seed: int = 0, test_fraction: float = 0.2) -> Loaded:
    """scikit-learn's 8x8 digits (1797 samples), with a seeded stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    idx = np.arange(len(bunch.target))
    _, test_idx = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=bunch.target)
    split = np.full(len(idx), "train", dtype=object)
    split[test_idx] = "test"
    table = build_table(bunch.data / 16.0, bunch.target, split=split, feature_shape=[1, 8, 8], what="digits")
    return Loaded(table, {"kind": "digits", "seed": int(seed), "test_fraction": float(test_fraction)}, "digits")


def _read_file(path: Path) -> pa.Table:
    if not path.exists():
        raise CurationError(f"file {path} does not exist", "check the path")
    if not path.is_file():
        raise CurationError(f"{path} is not a file", "give a .parquet or .csv file")
    if path.stat().st_size == 0:
        raise CurationError(f"file {path} is empty", "give a file with a header and at least one row")
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv", ".txt"):
        raise CurationError(f"unsupported file type {suffix or '(none)'} for {path}", "give a .parquet or .csv file")
    try:
        table = pq.read_table(path) if suffix in (".parquet", ".pq") else pacsv.read_csv(path)
        table.column_names  # noqa: B018 - decode the header now: names must be UTF-8
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CurationError(f"cannot read {path}: {first}", f"check that it is a valid {suffix[1:]} file") from None
    return table


def _numeric_column(table: pa.Table, name: str, path: Path) -> np.ndarray:
    column = table.column(name)
    if pa.types.is_null(column.type):
        raise CurationError(f"column {name!r} in {path} is empty", "drop it or fill it with numbers")
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise CurationError(f"feature column {name!r} in {path} is {column.type}, not numeric",
                            "give numeric feature columns only (use --feature-columns to pick them)")
    if column.null_count:
        raise CurationError(f"feature column {name!r} in {path} has {column.null_count} missing values",
                            "fill or drop those rows")
    return column.to_numpy()


def from_file(
    path: str | Path,
    label_column: str = "label",
    feature_columns: list[str] | None = None,
    id_column: str | None = None,
    split_column: str | None = None,
) -> Loaded:
    """A user's Parquet or CSV file: a label column, numeric feature columns (or one list column)."""
    path = Path(path)
    table = _read_file(path)
    if table.num_rows == 0:
        raise CurationError(f"file {path} has no rows", "give a file with at least one row")
    names = table.column_names
    for col in [label_column, id_column, split_column, *(feature_columns or [])]:
        if col is not None and col not in names:
            raise CurationError(f"column {col!r} not found in {path} (columns: {', '.join(names[:20])})",
                                "name an existing column with --label-column / --feature-columns / --id-column")
    labels_col = table.column(label_column)
    if labels_col.null_count:
        raise CurationError(f"label column {label_column!r} in {path} has {labels_col.null_count} missing values",
                            "fill or drop those rows")
    if not pa.types.is_integer(labels_col.type):
        raise CurationError(f"label column {label_column!r} in {path} is {labels_col.type}, not integers",
                            "encode labels as integers 0..C-1")
    reserved = {label_column, id_column, split_column}
    list_features = "features" in names and _is_list(table.column("features").type)
    if feature_columns is None:
        if list_features:
            feature_columns = ["features"]
        else:
            feature_columns = [c for c in names if c not in reserved and c not in ("sample_id", "split", "chunk")]
    if not feature_columns:
        raise CurationError(f"{path} has no feature columns besides the label", "add numeric feature columns")
    if feature_columns == ["features"] and list_features:
        features = _list_features(table.column("features"), path)
    else:
        features = np.column_stack([_numeric_column(table, c, path) for c in feature_columns])
    split = table.column(split_column).to_numpy(zero_copy_only=False).astype(str) if split_column else None
    if split is None and "split" in names:
        split = table.column("split").to_numpy(zero_copy_only=False).astype(str)
    ids = table.column(id_column).to_numpy() if id_column else None
    if ids is None and "sample_id" in names:
        ids = table.column("sample_id").to_numpy()
    built = build_table(features, labels_col.to_numpy(), sample_ids=ids, split=split, what=str(path))
    source = {"kind": "file", "path": str(path.resolve()), "label_column": label_column,
              "feature_columns": feature_columns, "id_column": id_column, "split_column": split_column}
    return Loaded(built, source, path.stem)


def _is_list(type_: pa.DataType) -> bool:
    return pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_fixed_size_list(type_)


def _list_features(column: pa.ChunkedArray, path: Path) -> np.ndarray:
    array = column.combine_chunks()
    if array.null_count:
        raise CurationError(f"features in {path} have {array.null_count} missing rows", "fill or drop those rows")
    lengths = None if pa.types.is_fixed_size_list(array.type) else np.asarray(array.value_lengths())
    if lengths is not None and (lengths != lengths[0]).any():
        raise CurationError(f"feature lists in {path} have different lengths", "give every row the same number of features")
    values = array.flatten()
    if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        raise CurationError(f"features in {path} are {values.type}, not numeric", "give numeric features")
    if values.null_count:
        raise CurationError(f"features in {path} have missing values", "fill or drop those rows")
    return values.to_numpy().reshape(len(array), -1)


def load(source: str, **options) -> Loaded:
    """Dispatch on the source name: 'mnist1d', 'digits', 'mnist1d-drift' (option ``step``: which chunk), or a file."""
    if source == "mnist1d-drift":
        from curation.data.stream import drifting_mnist1d  # stream.py builds on this module

        return drifting_mnist1d(options.get("step") or 0, **{k: v for k, v in options.items()
                                                             if k in ("samples", "seed") and v is not None})
    if source == "mnist1d":
        return mnist1d(**{k: v for k, v in options.items() if k in ("samples", "seed", "train_split") and v is not None})
    if source == "digits":
        return digits(**{k: v for k, v in options.items() if k in ("seed",) and v is not None})
    return from_file(source, **{k: v for k, v in options.items()
                                if k in ("label_column", "feature_columns", "id_column", "split_column")
                                and v is not None})
