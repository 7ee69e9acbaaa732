"""Shared fixtures: an isolated project per test, SQLite and PostgreSQL catalogs, one Prefect server."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest

# Before anything imports Prefect, MLflow or git: keep their state in a temp dir and give git an identity.
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="curation-tests-"))
os.environ["PREFECT_HOME"] = str(_SESSION_TMP / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_TO_API_ENABLED"] = "false"
os.environ.pop("PREFECT_API_URL", None)
for key, value in {
    "GIT_AUTHOR_NAME": "curation-tests",
    "GIT_AUTHOR_EMAIL": "tests@curation.invalid",
    "GIT_COMMITTER_NAME": "curation-tests",
    "GIT_COMMITTER_EMAIL": "tests@curation.invalid",
}.items():
    os.environ.setdefault(key, value)
for key in [k for k in os.environ if k.startswith("CURATION_") and k != "CURATION_TEST_PG_URL"]:
    del os.environ[key]

PG_URL = os.environ.get("CURATION_TEST_PG_URL")


@pytest.fixture(autouse=True, scope="module")
def _restore_environment():
    """Undo environment changes a module leaks: Dask's Nanny sets OMP_NUM_THREADS=1 (and more) in the
    parent process when it spawns workers, which would make later subprocesses train with other thread
    counts (and other floating-point results) than the test process."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty project directory, used as CURATION_HOME and as the working directory."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setenv("CURATION_HOME", str(project))
    monkeypatch.chdir(project)
    return project


@pytest.fixture
def settings(home):
    from curation.config import load_settings

    return load_settings()


def _pg_schema_url(base: str):
    """A fresh schema on the test server, and a URL whose connections use it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # fails (not skips) when the server is unreachable
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return admin, schema, url.render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog_url(request, tmp_path):
    """Each catalog test runs on SQLite and on PostgreSQL (skipped with a reason when no server is named)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
        return
    if not PG_URL:
        pytest.skip(
            "CURATION_TEST_PG_URL is not set: no PostgreSQL server to test against "
            "(.ci/run sets it to this machine's server)"
        )
    from sqlalchemy import text

    admin, schema, url = _pg_schema_url(PG_URL)
    yield url
    from curation.catalog.engine import connect

    connect.cache_clear()
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def project(home, catalog_url, monkeypatch):
    """Settings of an isolated project whose catalog is SQLite or PostgreSQL."""
    from curation.config import load_settings

    monkeypatch.setenv("CURATION_CATALOG_URL", catalog_url)
    return load_settings()


@pytest.fixture(scope="session")
def prefect_server():
    """Prefect's real temporary server, started once per test session (per pytest-xdist worker); a generous
    start-up limit, as the other worker may keep both cores busy meanwhile."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=600):
        yield


def _drop_database(base: str, name: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(make_url(base).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def pg_database():
    """Make fresh databases on the test server (dropped at the end of the session): ``make(prefix) -> URL``.
    Skipped with a reason when no server is named; an unreachable one fails."""
    if not PG_URL:
        pytest.skip(
            "CURATION_TEST_PG_URL is not set: no PostgreSQL server to test against "
            "(.ci/run sets it to this machine's server)"
        )
    from curation.stack import ensure_database

    made = []

    def make(prefix: str, suffixes: tuple[str, ...] = ("",)) -> str:
        """Databases <prefix>_<random><suffix>, one per suffix (e.g. the stack's <db>_mlflow); the first's URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        made.extend(name + suffix for suffix in suffixes)
        urls = [ensure_database(PG_URL, name + suffix) for suffix in suffixes]
        return urls[0]

    yield make
    for name in made:
        _drop_database(PG_URL, name)


@pytest.fixture(scope="session")
def mlflow_server(pg_database, tmp_path_factory):
    """A real `mlflow server` on a free 127.0.0.1 port: its store a fresh PostgreSQL database, its artifacts in
    a temp folder; its URL (for CURATION_TRACKING_URI)."""
    from curation.stack import Processes, free_port
    from curation.stack import mlflow_server as server

    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    service = server(pg_database("mlflow"), root / "artifacts", "127.0.0.1", port)
    procs = Processes(root / "logs", dict(os.environ))
    try:
        procs.start(service, root)
        procs.wait_up([service], 300)
        yield f"http://127.0.0.1:{port}"
    finally:
        procs.stop()
