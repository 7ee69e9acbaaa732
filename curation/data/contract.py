"""The data set contract: columns, types and checks every version passes before it is written.

A version is an Arrow table with ``sample_id`` (int64, unique, sorted), ``label`` (int32, 0..C-1),
``features`` (fixed-size list of float32) or ``image`` (encoded PNG/JPEG bytes), and optionally ``split``
(dictionary-encoded ``train``/``test``) and ``chunk`` (int32). Its manifest (rows, classes and their names,
feature shape, splits, the transform applied when features are read) rides in the Parquet metadata.

Labels of any type are encoded at build time: non-negative integers are already class indices and are kept;
anything else (strings, negative integers, booleans) becomes 0..C-1 in the sorted order of the names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from curation.errors import CurationError

FORMAT = "curation-dataset/1"
MANIFEST_KEY = b"curation.manifest"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
INT32 = np.iinfo(np.int32)
SPLITS = ("train", "test")


def check_name(name: str, what: str = "data set") -> str:
    """A name that is safe as a single path component (no separators, no '..')."""
    if not NAME_PATTERN.match(name or "") or ".." in name:
        raise CurationError(
            f"bad {what} name {name!r}",
            "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, without '..'",
        )
    return name


def _first_bad(sample_ids: np.ndarray, mask: np.ndarray) -> int:
    return int(sample_ids[np.flatnonzero(mask)[0]])


def build_table(
    features: np.ndarray | pa.Array,
    labels: np.ndarray,
    sample_ids: np.ndarray | None = None,
    split: Sequence[str] | np.ndarray | None = None,
    chunk: np.ndarray | None = None,
    feature_shape: Sequence[int] | None = None,
    what: str = "input",
    transform: dict | None = None,
) -> pa.Table:
    """Validate arrays against the contract and return the canonical table, sorted by sample_id.

    ``features`` is an (N, D) numeric array, or a binary Arrow array of encoded images (then ``feature_shape``
    is the decoded [C, H, W] and ``transform`` says how to decode; see ``curation.data.transforms``).
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0:
        raise CurationError(f"{what} has no rows", "give a file or source with at least one sample")
    sample_ids = check_ids(sample_ids, n, what)
    images = isinstance(features, pa.Array) and pa.types.is_binary(features.type)
    if images:
        if len(features) != n or feature_shape is None:
            raise CurationError(f"{what} has {len(features)} images for {n} labels", "give one label per image")
        d = int(np.prod(feature_shape))
    else:
        features = _feature_values(np.asarray(features), n, sample_ids, what)
        d = features.shape[1]
    labels, class_names = encode_labels(labels, sample_ids, what)
    order = sorted_order(sample_ids, what)
    shape = check_shape(feature_shape, d)
    codes, names = split_codes(split, what) if split is not None else (None, None)
    if order is not None:
        sample_ids, labels = sample_ids[order], labels[order]
        features = features.take(pa.array(order)) if images else features[order]
        codes = None if codes is None else codes[order]
        chunk = None if chunk is None else np.asarray(chunk)[order]
    table = rows_table(sample_ids, labels, features, codes, names, chunk)
    return with_manifest(table, manifest(table, shape, class_names, transform))


def check_ids(sample_ids: np.ndarray | None, n: int, what: str) -> np.ndarray:
    """int64 sample ids (0..N-1 when none are given); a one-line error for non-integer ids."""
    sample_ids = np.arange(n, dtype=np.int64) if sample_ids is None else np.asarray(sample_ids)
    if not np.issubdtype(sample_ids.dtype, np.integer):
        raise CurationError(f"{what} has non-integer sample ids ({sample_ids.dtype})", "give integer sample ids")
    return sample_ids.astype(np.int64, copy=False)


def sorted_order(sample_ids: np.ndarray, what: str) -> np.ndarray | None:
    """The order that sorts the ids (None when they already ascend); a one-line error for duplicates."""
    if (sample_ids[1:] > sample_ids[:-1]).all():
        return None
    order = np.argsort(sample_ids, kind="stable")
    ordered = sample_ids[order]
    dup = ordered[1:] == ordered[:-1]
    if dup.any():
        raise CurationError(
            f"{what} has duplicate sample ids (first: {int(ordered[1:][dup][0])})",
            "make sample ids unique or omit them to number rows 0..N-1",
        )
    return order


def check_shape(feature_shape: Sequence[int] | None, d: int) -> list[int]:
    shape = list(feature_shape) if feature_shape else [d]
    if int(np.prod(shape)) != d:
        raise CurationError(f"feature shape {shape} does not hold {d} features", "fix the feature shape")
    return shape


def split_codes(split: Sequence[str] | np.ndarray, what: str) -> tuple[np.ndarray, list[str]]:
    """Each row's split as an index into the sorted split names; a one-line error for unknown names."""
    codes, names = names_and_codes(split)
    unknown = sorted(set(names) - set(SPLITS))
    if unknown:
        raise CurationError(
            f"{what} has split names {unknown[:5]} (allowed: {', '.join(SPLITS)})",
            "name each row's split 'train' or 'test', or omit the split column",
        )
    return codes, names


def names_and_codes(values: Sequence[str] | np.ndarray | pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Each row's index (int32) into the sorted distinct strings of ``values``, and those strings; through
    Arrow's dictionary encoding, so no row becomes a Python or numpy string (millions of rows stay cheap)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    elif not isinstance(values, pa.Array):
        values = pa.array(np.asarray(values))
    encoded = values.cast(pa.string()).dictionary_encode()
    names = encoded.dictionary.to_pylist()
    order = np.argsort(names)  # dictionary position of each name in sorted order
    rank = np.empty(len(names), dtype=np.int32)
    rank[order] = np.arange(len(names), dtype=np.int32)
    return rank[encoded.indices.to_numpy(zero_copy_only=False)], [names[i] for i in order]


def as_names(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A string column as a numpy object array holding one Python string per distinct value (8 bytes a row)."""
    codes, names = names_and_codes(column)
    return np.asarray(names, dtype=object)[codes]


def train_rows(codes: np.ndarray, names: list[str]) -> np.ndarray:
    """Which rows are in the train split (none when it is missing)."""
    return codes == names.index("train") if "train" in names else np.zeros(len(codes), bool)


def split_counts(codes: np.ndarray, names: list[str]) -> dict[str, int]:
    counts = np.bincount(codes, minlength=len(names))
    return {str(k): int(v) for k, v in sorted(zip(names, counts)) if v}


def rows_table(
    sample_ids: np.ndarray,
    labels: np.ndarray,
    features: np.ndarray | pa.Array,
    codes: np.ndarray | None = None,
    split_names: list[str] | None = None,
    chunk: np.ndarray | None = None,
) -> pa.Table:
    """Checked rows, in sample-id order, as the contract's columns (no manifest yet)."""
    columns = {"sample_id": pa.array(sample_ids, pa.int64()), "label": pa.array(labels.astype(np.int32), pa.int32())}
    if isinstance(features, pa.Array):
        columns["image"] = features
    else:
        d = features.shape[1]
        columns["features"] = pa.FixedSizeListArray.from_arrays(pa.array(features.reshape(-1), pa.float32()), d)
    if codes is not None:
        columns["split"] = pa.DictionaryArray.from_arrays(
            pa.array(codes, pa.int32()), pa.array(split_names, pa.string())
        )
    if chunk is not None:
        columns["chunk"] = pa.array(np.asarray(chunk).astype(np.int32), pa.int32())
    return pa.table(columns)


def with_manifest(table: pa.Table | pa.Schema, manifest: dict) -> pa.Table | pa.Schema:
    """The table (or schema) carrying the version's manifest in its metadata."""
    metadata = {MANIFEST_KEY: json.dumps(manifest).encode()}
    return table.with_metadata(metadata) if isinstance(table, pa.Schema) else table.replace_schema_metadata(metadata)


def _feature_values(features: np.ndarray, n: int, sample_ids: np.ndarray, what: str) -> np.ndarray:
    """Numeric features as a finite (N, D) float32 array, or a one-line error."""
    if features.ndim == 1:
        features = features.reshape(n, 1)
    if features.ndim != 2 or features.shape[0] != n:
        raise CurationError(f"{what} has {features.shape[0]} feature rows but {n} labels", "give one label per row")
    if features.shape[1] == 0:
        raise CurationError(f"{what} has no feature columns", "name the feature columns or add numeric columns")
    if (
        not (np.issubdtype(features.dtype, np.number) and not np.issubdtype(features.dtype, np.complexfloating))
        or features.dtype == np.bool_
    ):
        raise CurationError(f"{what} has non-numeric features ({features.dtype})", "give numeric feature columns only")
    with np.errstate(over="ignore", invalid="ignore"):
        values = features.astype(np.float32, copy=False)
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        raise CurationError(
            f"{what} has {int((~finite).sum())} rows with NaN, inf or values beyond float32 "
            f"(first: sample_id {_first_bad(sample_ids, ~finite)})",
            "clean or drop those rows before adding the data set",
        )
    return values


def encode_labels(labels: np.ndarray, sample_ids: np.ndarray, what: str) -> tuple[np.ndarray, list]:
    """Labels as int32 class indices, and the class names (index -> name); see the module docstring."""
    if labels.dtype.kind == "O":  # mixed Python objects: names only if they are all strings or all integers
        kinds = {type(v) for v in labels.tolist()}
        if kinds <= {str}:
            return names_and_codes(labels)
        if kinds <= {int, np.int64}:
            labels = labels.astype(np.int64)
        else:
            raise CurationError(
                f"{what} has labels of mixed types ({', '.join(sorted(k.__name__ for k in kinds))})",
                "give labels that are all integers or all strings",
            )
    if labels.dtype.kind == "f":
        raise CurationError(
            f"{what} has labels of type {labels.dtype}, not integers or names",
            "give class names (strings) or integer labels",
        )
    if labels.dtype.kind in "iu":
        out_of_range = (labels < INT32.min) | (labels > INT32.max)
        if out_of_range.any():
            raise CurationError(
                f"{what} has labels outside int32 (first: sample_id {_first_bad(sample_ids, out_of_range)})",
                "encode labels as small integers",
            )
        if labels.min() >= 0:  # already class indices
            return labels.astype(np.int32), list(range(int(labels.max()) + 1))
    if labels.dtype.kind not in "iubUS":
        raise CurationError(f"{what} has labels of type {labels.dtype}", "give class names (strings) or integer labels")
    if labels.dtype.kind == "U":
        return names_and_codes(labels)
    names, codes = np.unique(labels, return_inverse=True)
    return codes.astype(np.int32), [v.item() if isinstance(v, np.generic) else v for v in names.tolist()]


def manifest(
    table: pa.Table | pa.Schema,
    feature_shape: Sequence[int],
    class_names: Sequence | None = None,
    transform: dict | None = None,
    labels: np.ndarray | None = None,
    splits: dict[str, int] | None = None,
) -> dict:
    """What a version is: rows, schema, classes, feature shape and split sizes (the hash comes from DVC).
    ``labels`` and ``splits`` are read from the table unless given (a streamed file gives only its schema)."""
    schema = table if isinstance(table, pa.Schema) else table.schema
    if labels is None:
        labels = table.column("label").to_numpy()
    if splits is None:
        splits = {}
        if "split" in schema.names:
            split = table.column("split").combine_chunks()
            splits = split_counts(split.indices.to_numpy(), split.dictionary.to_pylist())
    return {
        "format": FORMAT,
        "rows": len(labels),
        "num_features": int(np.prod(feature_shape)),
        "feature_shape": [int(x) for x in feature_shape],
        "schema": {f.name: str(f.type) for f in schema},
        "classes": [int(c) for c in np.flatnonzero(np.bincount(labels))],  # class indices: never negative
        "class_names": list(class_names) if class_names is not None else None,
        "splits": splits,
        "transform": transform,
    }


def read_manifest(schema: pa.Schema) -> dict:
    raw = (schema.metadata or {}).get(MANIFEST_KEY)
    if raw is None:
        raise CurationError("Parquet file has no curation manifest", "add it with `curation data add <file>`")
    return json.loads(raw)
