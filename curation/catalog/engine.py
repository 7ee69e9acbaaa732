"""Connecting to the catalog: engine options per backend, migrations on first use, safe URLs."""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from curation.errors import CurationError
from curation.locks import locked

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATION_TIMEOUT_S = 600  # how long a process waits for another one's migration


def redact(url: str) -> str:
    """The URL with its password replaced by ***, safe for logs and error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def _alembic_config(connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _one_line(exc: BaseException, url: str) -> str:
    """The first line of a driver error, with any password in the URL scrubbed."""
    message = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    password = make_url(url).password
    return message.replace(str(password), "***") if password else message


@contextmanager
def _migration_lock(engine: Engine):
    """Serialise migrations between processes: a file lock for SQLite, an advisory lock for PostgreSQL."""
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        with locked(Path(f"{engine.url.database}.migrate.lock"), "a catalog migration", MIGRATION_TIMEOUT_S):
            yield
    elif engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(727274)"))
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(727274)"))
                conn.commit()
    else:
        yield


def _head() -> str:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration; a no-op when it is already there."""
    with engine.connect() as conn:
        if MigrationContext.configure(conn).get_current_revision() == _head():
            return
    with _migration_lock(engine), engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "head")


@lru_cache(maxsize=8)
def connect(url: str) -> Engine:
    """An engine for ``url`` whose schema is migrated; one per URL per process."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise CurationError(
            f"catalog URL {redact(url)!r} is not a database URL",
            "set CURATION_CATALOG_URL to e.g. sqlite:///catalog.db or postgresql+psycopg://user@host/db",
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        db = Path(parsed.database)
        if not db.parent.is_dir():
            raise CurationError(
                f"catalog directory {db.parent} does not exist", "create it or fix CURATION_CATALOG_URL"
            )
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        kwargs = {"pool_pre_ping": True}
        if parsed.get_backend_name() == "postgresql":
            kwargs["connect_args"] = {"connect_timeout": 5}
        try:
            engine = create_engine(parsed, **kwargs)
        except (ImportError, ModuleNotFoundError) as exc:
            raise CurationError(
                f"no driver for catalog URL {redact(url)}: {exc}",
                "install the 'postgres' extra: pip install 'curation[postgres]'",
            ) from None
    try:
        migrate(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise CurationError(
            f"cannot reach the catalog at {redact(url)}: {_one_line(exc, url)}",
            "check CURATION_CATALOG_URL and that the database server is running",
        ) from None
    return engine
