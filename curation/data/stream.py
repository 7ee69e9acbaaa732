"""Data that keeps arriving: chunks as new versions of one data set, and a drifting MNIST-1D simulator.

Each chunk is its own version (its own Parquet file, DVC-tracked) whose parent is the data set's
previous chunk, so the chain of versions is the stream. A chunk must match the data set's feature
shape and may only use its classes; the same chunk twice is refused.
"""

from __future__ import annotations

import numpy as np

from curation.catalog import Catalog
from curation.config import Settings
from curation.data.contract import build_table, check_name
from curation.data.sources import Loaded
from curation.data.versions import VersionInfo, add_version
from curation.errors import CurationError

ID_STRIDE = 10**9  # chunk c uses sample ids c * ID_STRIDE + i


def drifting_mnist1d(chunk: int, samples: int = 2000, seed: int = 0, drift: float = 1.0,
                     test_fraction: float = 0.2) -> Loaded:
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
    table = build_table(pool["x"][rows], pool["y"][rows], sample_ids=ids, split=split,
                        chunk=np.full(samples, chunk), feature_shape=[1, pool["x"].shape[1]], what=f"chunk {chunk}")
    return Loaded(table, {"kind": "drifting-mnist1d", "chunk": chunk, "samples": samples, "seed": seed,
                          "drift": drift}, "stream")


def chunks(settings: Settings, dataset: str) -> list[VersionInfo]:
    """The data set's versions in arrival order (the stream so far)."""
    return [VersionInfo.of(v) for v in Catalog(settings.catalog).versions(dataset)]


def add_chunk(settings: Settings, dataset: str, loaded: Loaded) -> VersionInfo:
    """Register a new chunk as the next version of ``dataset`` (parent = the previous chunk)."""
    check_name(dataset)
    so_far = chunks(settings, dataset)
    table = loaded.table
    if table.num_rows == 0:
        raise CurationError("the chunk is empty", "send a chunk with at least one sample")
    if so_far:
        last = so_far[-1]
        width = table.schema.field("features").type.list_size
        if width != last.num_features or set(table.column_names) != set(last.schema_columns):
            raise CurationError(f"chunk schema ({width} features, columns {sorted(table.column_names)}) differs from "
                                f"data set {dataset!r} ({last.num_features} features, {sorted(last.schema_columns)})",
                                "send chunks with the data set's schema")
        new_classes = sorted(set(np.unique(table.column("label").to_numpy()).tolist()) - set(so_far[0].classes))
        if new_classes:
            raise CurationError(f"chunk has classes {new_classes} that data set {dataset!r} does not have "
                                f"({so_far[0].classes})", "send chunks with the data set's classes only")
    info = add_version(settings, loaded, name=dataset, parent=str(so_far[-1].id) if so_far else None)
    if not info.created:
        raise CurationError(f"this chunk is already registered as version {info.id} of {dataset!r}",
                            "send only new data")
    return info
