"""The SQL catalog on SQLite and PostgreSQL: migrations, versions, lookups, safe errors."""

import threading

import pytest
from sqlalchemy import inspect, text

from curation.catalog import Catalog, DatasetVersion, ModelVersion, TrainingRun, redact
from curation.catalog.engine import connect
from curation.errors import CurationError

TABLES = {
    "datasets",
    "dataset_versions",
    "score_sets",
    "selection_plans",
    "training_runs",
    "model_versions",
    "shipped_updates",
    "alembic_version",
}


def _fields(content_hash="a" * 32, **extra):
    base = dict(
        content_hash=content_hash,
        path=f"data/x/{content_hash}.parquet",
        rows=10,
        num_features=4,
        feature_shape=[4],
        schema={"sample_id": "int64"},
        classes=[0, 1],
        splits={"train": 10},
        source={"kind": "test"},
    )
    return {**base, **extra}


def test_migrations_create_every_table_once(catalog_url):
    catalog = Catalog(catalog_url)
    assert set(inspect(catalog.engine).get_table_names()) >= TABLES
    connect.cache_clear()
    Catalog(catalog_url)  # second start: migrations are a no-op
    with catalog.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1


def test_migrated_schema_matches_the_models(catalog_url):
    """Every migration together builds exactly the tables, columns and indexes the models declare."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from curation.catalog.models import Base

    with Catalog(catalog_url).engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_sqlite_uses_wal_and_busy_timeout(tmp_path):
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    with catalog.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 10_000
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_add_version_is_idempotent_and_lookups_work(catalog_url):
    catalog = Catalog(catalog_url)
    v1, created = catalog.add_version("digits", **_fields("ab" * 16))
    again, created_again = catalog.add_version("digits", **_fields("ab" * 16))
    v2, _ = catalog.add_version("digits", **_fields("ac" * 16, parent_id=v1.id))
    assert created and not created_again and again.id == v1.id
    assert [v.id for v in catalog.versions("digits")] == [v1.id, v2.id]
    assert catalog.version(str(v1.id)).content_hash == "ab" * 16
    assert catalog.version("digits").id == v2.id  # the newest
    assert catalog.version("digits@abab").id == v1.id
    assert catalog.version("digits@ac").parent_id == v1.id
    with pytest.raises(CurationError, match="ambiguous"):
        catalog.version("digits@a")
    with pytest.raises(CurationError, match="no data set version 'nope'"):
        catalog.version("nope")
    with pytest.raises(CurationError, match="no data set version"):
        catalog.version("digits@%")  # LIKE wildcards are escaped


def test_concurrent_same_content_yields_one_row(catalog_url):
    catalog = Catalog(catalog_url)
    results, errors = [], []

    def add():
        try:
            results.append(catalog.add_version("race", **_fields("cd" * 16)))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({v.id for v, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert len(catalog.versions("race")) == 1


def test_runs_and_models_keep_lineage(catalog_url):
    catalog = Catalog(catalog_url)
    version, _ = catalog.add_version("m", **_fields())
    with catalog.session() as s:
        run = TrainingRun(version_id=version.id, architecture="mlp", params={"lr": 0.1}, mlflow_run_id="abc")
        s.add(run)
        s.flush()
        parent = ModelVersion(run_id=run.id, name="m", path="p0", content_hash="0", metrics={})
        s.add(parent)
        s.flush()
        child = ModelVersion(run_id=run.id, parent_id=parent.id, name="m", path="p1", content_hash="1", metrics={})
        s.add(child)
    with catalog.session() as s:
        assert s.get(ModelVersion, child.id).parent_id == parent.id
        assert s.get(TrainingRun, run.id).status == "RUNNING"


def test_failed_transaction_leaves_nothing(catalog_url):
    catalog = Catalog(catalog_url)
    with pytest.raises(RuntimeError), catalog.session() as s:
        s.add(DatasetVersion(dataset_id=None, **_fields()))  # would violate NOT NULL at flush
        raise RuntimeError("crash before commit")
    assert catalog.versions() == []


def test_unreachable_catalog_is_one_line_without_password():
    url = "postgresql+psycopg://curation:hunter2secret@127.0.0.1:1/nowhere"
    with pytest.raises(CurationError) as info:
        Catalog(url)
    message = str(info.value)
    assert "hunter2secret" not in message and "***" in message
    assert "\n" not in message and "CURATION_CATALOG_URL" in message
    assert redact(url) == "postgresql+psycopg://curation:***@127.0.0.1:1/nowhere"


@pytest.mark.parametrize(
    "url, match",
    [
        ("not a url", "not a database URL"),
        ("sqlite:////no/such/dir/catalog.db", "does not exist"),
    ],
)
def test_bad_catalog_urls(url, match):
    with pytest.raises(CurationError, match=match):
        Catalog(url)
