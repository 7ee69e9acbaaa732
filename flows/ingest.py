"""The `ingest` flow: load a source, stage it as Parquet, register it (DVC + catalog), announce a new version."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from curation.config import load_settings
from curation.data import sources
from curation.data.versions import VersionInfo, push_version, register, stage_version
from flows._artifacts import record_table
from flows._tasks import transient
from flows.events import version_added


@task(name="load-source", cache_policy=NO_CACHE)
def load_source(source: str, options: dict) -> sources.Loaded:
    return sources.load(source, **options)


@task(name="stage-parquet", cache_policy=NO_CACHE)
def stage(loaded: sources.Loaded):
    return stage_version(load_settings(), loaded)


@task(name="register-version", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1, retry_condition_fn=transient)
def register_version(staged, name: str, source: dict, parent: str | None) -> VersionInfo:
    return register(load_settings(), staged, name, source, parent)


@task(name="push-version", cache_policy=NO_CACHE)
def push(info: VersionInfo) -> str | None:
    return push_version(load_settings(), info)


@flow(name="ingest", log_prints=True)
def ingest(
    source: str = "mnist1d",
    name: str | None = None,
    parent: str | None = None,
    samples: int | None = None,
    seed: int | None = None,
    label_column: str | None = None,
    feature_columns: list[str] | None = None,
    id_column: str | None = None,
) -> dict:
    """Add one data set version from ``source`` ('mnist1d', 'digits' or a file); idempotent."""
    return ingest_steps(source, name, parent, samples, seed, label_column, feature_columns, id_column)


def ingest_steps(
    source: str,
    name: str | None = None,
    parent: str | None = None,
    samples: int | None = None,
    seed: int | None = None,
    label_column: str | None = None,
    feature_columns: list[str] | None = None,
    id_column: str | None = None,
) -> dict:
    """The ingest flow's tasks and artifact, inside the calling flow (``ingest`` or ``end-to-end``)."""
    options = {
        "samples": samples,
        "seed": seed,
        "label_column": label_column,
        "feature_columns": feature_columns,
        "id_column": id_column,
    }
    loaded = load_source(source, options)
    staged = stage(loaded)
    info = register_version(staged, name or loaded.default_name, loaded.source, parent)
    push(info)  # before the event: whoever retrains on it elsewhere can pull it
    version_added(info)
    record_table("ingested-version", info.to_dict(), f"{'Added' if info.created else 'Already had'} {info.ref}")
    print(f"{'added' if info.created else 'unchanged'} {info.ref}: {info.rows} rows")
    return info.to_dict()


if __name__ == "__main__":
    ingest()
