"""Data that keeps arriving: chunks as new versions of one data set, and a drifting MNIST-1D simulator.

Each chunk is its own version (its own Parquet file, DVC-tracked) whose parent is the data set's
previous chunk, so the chain of versions is the stream. A chunk must match the data set's feature
shape and may only use its classes; the same chunk twice is refused. A chunk whose sample ids are
already in the data set's earlier chunks is refused, or with ``renumber`` given fresh ids: the largest
id so far + 1 onwards, in the source's id order; its source ids stay in an ``original_sample_id``
column and its source record says so (``renumbered``).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from curation.catalog import Catalog
from curation.config import Settings
from curation.data.contract import MANIFEST_KEY, build_table, check_name, manifest, read_manifest, with_manifest
from curation.data.sources import Loaded
from curation.data.store import VersionReader
from curation.data.versions import VersionInfo, register, stage_version
from curation.errors import CurationError

ID_STRIDE = 10**9  # chunk c uses sample ids c * ID_STRIDE + i
ORIGINAL_ID = "original_sample_id"  # a renumbered chunk's source ids
OPTIONAL = {"chunk", ORIGINAL_ID}  # columns a chunk may have or lack


def drifting_mnist1d(
    chunk: int, samples: int = 2000, seed: int = 0, drift: float = 1.0, test_fraction: float = 0.2
) -> Loaded:
    """MNIST-1D chunk ``chunk`` with drift growing over chunks: more noise, more shear, shifting class priors.

    Each chunk holds ``samples`` rows, a ``test_fraction`` of them in its own test split.
    """
    if samples < 10:
        raise CurationError(f"a chunk needs at least 10 samples, got {samples}", "ask for more samples")
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = samples * 3  # generate a pool, then draw with this chunk's class priors
    args.seed = seed * 100_003 + chunk
    args.train_split = 1.0
    args.corr_noise_scale = 0.25 + 0.05 * drift * chunk
    args.shear_scale = 0.75 + 0.15 * drift * chunk
    state = np.random.get_state()  # mnist1d seeds numpy's global generator: leave it as we found it
    try:
        pool = make_dataset(args)
    finally:
        np.random.set_state(state)
    rng = np.random.default_rng([seed, chunk])
    classes = np.arange(10)
    priors = np.exp(0.15 * drift * chunk * (classes - 4.5) / 4.5)
    weights = (priors / priors.sum())[pool["y"]]
    rows = rng.choice(len(pool["y"]), size=samples, replace=False, p=weights / weights.sum())
    split = np.where(rng.random(samples) < test_fraction, "test", "train")
    ids = chunk * ID_STRIDE + np.arange(samples, dtype=np.int64)
    table = build_table(
        pool["x"][rows],
        pool["y"][rows],
        sample_ids=ids,
        split=split,
        chunk=np.full(samples, chunk),
        feature_shape=[1, pool["x"].shape[1]],
        what=f"chunk {chunk}",
    )
    return Loaded(
        table, {"kind": "drifting-mnist1d", "chunk": chunk, "samples": samples, "seed": seed, "drift": drift}, "stream"
    )


def chunks(settings: Settings, dataset: str) -> list[VersionInfo]:
    """The data set's versions in arrival order (the stream so far)."""
    return [VersionInfo.of(v) for v in Catalog(settings.catalog).versions(dataset)]


def add_chunk(settings: Settings, dataset: str, loaded: Loaded, renumber: bool = False) -> VersionInfo:
    """Register a new chunk as the next version of ``dataset`` (parent = the previous chunk).

    ``renumber``: a chunk whose sample ids collide with earlier chunks' gets fresh ids (see the module)."""
    check_name(dataset)
    so_far = chunks(settings, dataset)
    table = loaded.whole()  # a chunk is checked against the stream as a whole
    if table.num_rows == 0:
        raise CurationError("the chunk is empty", "send a chunk with at least one sample")
    if so_far:
        _check_fits(table, dataset, so_far)
        table = _with_manifest(table, so_far[-1].feature_shape)  # a file's flat features take the stream's shape
        loaded = Loaded(table, loaded.source, loaded.default_name)
    staged = stage_version(settings, loaded)
    try:
        same = next(
            (
                v
                for v in so_far
                if staged.content_hash in (v.content_hash, v.source.get("renumbered", {}).get("original_content_hash"))
            ),
            None,
        )
        if same is not None:
            raise CurationError(
                f"this chunk is already registered as version {same.id} of {dataset!r}", "send only new data"
            )
        taken = [VersionReader(settings.home / v.path).sample_ids for v in so_far]
        ids = table.column("sample_id").to_numpy()
        clash = np.intersect1d(ids, np.concatenate(taken)) if taken else ids[:0]
        source = loaded.source
        if len(clash) and not renumber:
            raise CurationError(
                f"{len(clash)} sample ids of this chunk (first: {int(clash[0])}) are already in data set {dataset!r}",
                f"add it with --chunk to give it fresh ids (the source's ids are kept in {ORIGINAL_ID})",
            )
        if len(clash):
            first = int(max(t.max() for t in taken if len(t))) + 1
            source = {
                **source,
                "renumbered": {
                    "original_content_hash": staged.content_hash,
                    "first_id": first,
                    "column": ORIGINAL_ID,
                    "colliding": len(clash),
                },
            }
            staged.discard()
            staged = stage_version(settings, Loaded(_renumbered(table, first), source, loaded.default_name))
    except BaseException:
        staged.discard()
        raise
    info = register(settings, staged, dataset, source, parent=str(so_far[-1].id) if so_far else None)
    if not info.created:
        raise CurationError(
            f"this chunk is already registered as version {info.id} of {dataset!r}", "send only new data"
        )
    return info


def _check_fits(table: pa.Table, dataset: str, so_far: list[VersionInfo]) -> None:
    """The chunk has the data set's feature shape, columns (besides OPTIONAL ones) and only its classes."""
    last = so_far[-1]
    width = table.schema.field("features").type.list_size
    columns, expected = set(table.column_names) - OPTIONAL, set(last.schema_columns) - OPTIONAL
    if width != last.num_features or columns != expected:
        raise CurationError(
            f"chunk schema ({width} features, columns {sorted(columns)}) differs from data set "
            f"{dataset!r} ({last.num_features} features, {sorted(expected)})",
            "send chunks with the data set's schema",
        )
    new_classes = sorted(set(np.unique(table.column("label").to_numpy()).tolist()) - set(so_far[0].classes))
    if new_classes:
        raise CurationError(
            f"chunk has classes {new_classes} that data set {dataset!r} does not have ({so_far[0].classes})",
            "send chunks with the data set's classes only",
        )


def _renumbered(table: pa.Table, first: int) -> pa.Table:
    """``table`` with sample ids first, first + 1, ... (its sorted order kept) and the old ids in ORIGINAL_ID."""
    ids = table.column("sample_id")
    fresh = pa.array(np.arange(first, first + table.num_rows, dtype=np.int64), pa.int64())
    shape = read_manifest(table.schema)["feature_shape"]
    return _with_manifest(
        table.set_column(table.schema.get_field_index("sample_id"), "sample_id", fresh).append_column(ORIGINAL_ID, ids),
        shape,
    )


def _with_manifest(table: pa.Table, feature_shape: list) -> pa.Table:
    """The table with the stream's feature shape in its manifest; the class names and transform it came with
    are kept (so the same chunk gives the same bytes, whichever chunk of the stream it is)."""
    given = json.loads((table.schema.metadata or {}).get(MANIFEST_KEY, b"{}"))
    return with_manifest(table, manifest(table, feature_shape, given.get("class_names"), given.get("transform")))
