"""`curation stack`: every service the project can use, as separate processes on this machine.

PostgreSQL (already running; its URL given) holds the catalog and, in a database of its own, the MLflow
store; then an MLflow server (artifacts under ``<home>/mlflow/artifacts``), a Prefect server with the
deployments registered in a process work pool and one worker, a Dask scheduler and its workers. All bind
127.0.0.1 unless told otherwise; their logs go to ``<home>/.curation/stack/``. The environment to
export is printed (and written to a file for scripts); a worker that dies is started again; Ctrl-C stops
everything.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from curation.catalog import redact
from curation.config import Settings
from curation.errors import CurationError
from curation.ui import interrupt, tool, wait_until_up

STACK_DIR = Path(".curation") / "stack"  # under the project home: logs, the Prefect server's home, env file
WORK_POOL = "curation"
PRELOAD = ("curation.distributed.scoring", "curation.distributed.selection")  # what the Dask workers run


@dataclass
class Ports:
    mlflow: int = 5000
    prefect: int = 4200
    dask: int = 8786


@dataclass
class Service:
    """One process of the stack: its command, where it answers when up, and extra environment."""

    name: str
    command: list[str]
    health: str | None = None  # http://... answering 200, or tcp://host:port accepting connections
    env: dict[str, str] = field(default_factory=dict)
    restart: bool = False  # a worker (it holds no state): started again when it dies


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ensure_database(pg_url: str, name: str) -> str:
    """The URL of database ``name`` on ``pg_url``'s server, created when missing."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    url = make_url(pg_url)
    if url.drivername != "postgresql+psycopg":
        raise CurationError(
            f"{redact(pg_url)} is not a PostgreSQL URL with the psycopg driver",
            "give postgresql+psycopg://user@host:5432/database",
        )
    from psycopg import sql

    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")  # the maintenance database
    try:
        with admin.connect() as conn:
            if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is None:
                # a database name cannot be a bound parameter: psycopg quotes it as an identifier
                conn.connection.driver_connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except OperationalError as exc:
        reason = (str(exc.orig).strip().splitlines() or ["unreachable"])[0]
        raise CurationError(
            f"cannot reach PostgreSQL at {redact(pg_url)}: {reason}", "start PostgreSQL or give its URL with --pg-url"
        ) from None
    finally:
        admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def mlflow_server(store_uri: str, artifacts: Path, host: str, port: int) -> Service:
    """An MLflow tracking server; clients send artifacts through it (--artifacts-destination). The store's URI
    goes by environment, keeping its password out of the process list."""
    return Service(
        "mlflow",
        [
            tool("mlflow"),
            "server",
            "--artifacts-destination",
            str(artifacts),
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        f"http://{host}:{port}/health",
        {"MLFLOW_BACKEND_STORE_URI": store_uri},
    )


def prefect_server(home: Path, host: str, port: int) -> Service:
    """A Prefect server with its own state in ``home`` (its SQLite database) and no analytics."""
    return Service(
        "prefect",
        [tool("prefect"), "server", "start", "--host", host, "--port", str(port)],
        f"http://{host}:{port}/api/health",
        {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": f"http://{host}:{port}/api",
        },
    )


def dask_scheduler(host: str, port: int) -> Service:
    return Service(
        "dask-scheduler",
        [tool("dask"), "scheduler", "--host", host, "--port", str(port), "--no-dashboard"],
        f"tcp://{host}:{port}",
    )


def dask_worker(address: str, host: str, index: int, share: int = 1) -> Service:
    """One worker process with one task thread; torch in it uses 1/``share`` of the machine's cores (``share``:
    the workers on this machine), so the workers do not oversubscribe the CPU. It imports the task modules as it
    starts (``PRELOAD``), so a first task does not spend seconds importing torch and faiss."""
    return Service(
        f"dask-worker-{index}",
        [
            tool("dask"),
            "worker",
            address,
            "--host",
            host,
            "--nworkers",
            "1",
            "--nthreads",
            "1",
            "--name",
            f"worker-{index}",
            "--no-dashboard",
            *(arg for module in PRELOAD for arg in ("--preload", module)),
        ],
        env={"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // share))},
        restart=True,
    )


def prefect_worker(pool: str) -> Service:
    """A process worker: each flow run of the pool's deployments in a subprocess of this one."""
    return Service(
        "prefect-worker", [tool("prefect"), "worker", "start", "--pool", pool, "--type", "process"], restart=True
    )


def _up(health: str, timeout_s: float) -> bool:
    if health.startswith("http"):
        return wait_until_up(health, timeout_s)
    host, port = health.removeprefix("tcp://").rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return False


class Processes:
    """Started services; ``check`` starts a dead worker again (``MAX_RESTARTS`` times at most); ``stop`` ends
    each process group (a worker's flow runs with it), newest first."""

    MAX_RESTARTS = 5

    def __init__(self, logs: Path, env: dict[str, str]):
        self.logs, self.env = logs, env
        self.procs: dict[str, subprocess.Popen] = {}
        self.services: dict[str, tuple[Service, Path]] = {}
        self.restarts: dict[str, int] = {}

    def start(self, service: Service, cwd: Path) -> subprocess.Popen:
        self.services[service.name] = (service, cwd)
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{service.name}.log", "ab") as log:
            proc = subprocess.Popen(
                service.command,
                cwd=cwd,
                env={**self.env, **service.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[service.name] = proc
        return proc

    def wait_up(self, services: list[Service], timeout_s: float) -> None:
        """Block until every service with a health address answers; a dead or silent one is an error."""
        for service in services:
            if service.health and not _up(service.health, timeout_s):
                raise CurationError(
                    f"{service.name} did not come up at {service.health} within {timeout_s:.0f} s",
                    f"read {self.logs / service.name}.log",
                )
        self.check()

    def check(self) -> None:
        """Start a dead worker again; a dead server, or a worker that keeps dying, is an error."""
        for name, proc in list(self.procs.items()):
            if proc.poll() is None:
                continue
            service, cwd = self.services[name]
            if not service.restart or self.restarts.get(name, 0) >= self.MAX_RESTARTS:
                raise CurationError(f"{name} exited with code {proc.returncode}", f"read {self.logs / name}.log")
            self.restarts[name] = self.restarts.get(name, 0) + 1
            print(f"{name} exited with code {proc.returncode}: started again", file=sys.stderr, flush=True)
            self.start(service, cwd)

    def stop(self, patience_s: float = 20.0) -> None:
        """Ctrl-C to each process group (a Prefect worker fails on SIGTERM); after ``patience_s`` in all, SIGKILL
        to the groups still running (named on stderr)."""
        running = [(name, proc) for name, proc in reversed(self.procs.items()) if proc.poll() is None]
        for _, proc in running:
            os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + patience_s
        for name, proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop on Ctrl-C within {patience_s:.0f} s: killed", file=sys.stderr, flush=True)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def exports(catalog_url: str, host: str, ports: Ports) -> dict[str, str]:
    """What a shell (or a CI job) exports to use the stack."""
    return {
        "CURATION_CATALOG_URL": catalog_url,
        "CURATION_TRACKING_URI": f"http://{host}:{ports.mlflow}",
        "PREFECT_API_URL": f"http://{host}:{ports.prefect}/api",
        "DASK_SCHEDULER_ADDRESS": f"tcp://{host}:{ports.dask}",
    }


@contextmanager
def running(
    settings: Settings,
    pg_url: str,
    host: str = "127.0.0.1",
    ports: Ports | None = None,
    dask_workers: int = 2,
    work_pool: str = WORK_POOL,
    version: str = "mnist1d",
    timeout_s: float = 300.0,
) -> Iterator[tuple[dict[str, str], Processes]]:
    """Start the stack for ``settings.home``; yields the environment to export and the processes; stops it
    all on exit."""
    ports = ports or Ports()
    home, state = settings.home, settings.home / STACK_DIR
    pg_url = ensure_database(pg_url, _database(pg_url))
    mlflow_store = ensure_database(pg_url, f"{_database(pg_url)}_mlflow")
    env = {**os.environ, **exports(pg_url, host, ports), "CURATION_HOME": str(home)}
    (home / "mlflow" / "artifacts").mkdir(parents=True, exist_ok=True)
    procs = Processes(state / "logs", env)
    try:
        servers = [
            mlflow_server(mlflow_store, home / "mlflow" / "artifacts", host, ports.mlflow),
            prefect_server(state / "prefect", host, ports.prefect),
            dask_scheduler(host, ports.dask),
        ]
        for service in servers:
            procs.start(service, home)
        procs.wait_up(servers, timeout_s)
        registered = subprocess.run(
            [tool("curation"), "serve", "--work-pool", work_pool, "--version", version],
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if registered.returncode != 0:
            raise CurationError(
                f"registering the deployments failed: {registered.stderr.strip()[-300:]}",
                f"run `curation serve --work-pool {work_pool}` with PREFECT_API_URL set",
            )
        workers = [prefect_worker(work_pool)] + [
            dask_worker(env["DASK_SCHEDULER_ADDRESS"], host, i + 1, dask_workers) for i in range(dask_workers)
        ]
        for service in workers:
            procs.start(service, home)
        procs.check()
        yield {k: env[k] for k in exports(pg_url, host, ports)}, procs
    finally:
        procs.stop()


def _database(pg_url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(pg_url).database or "postgres"


def run(settings: Settings, pg_url: str, host: str, ports: Ports, dask_workers: int, env_file: Path | None) -> None:
    """`curation stack`: start, print the exports (password hidden), wait for Ctrl-C or a process to die."""
    signal.signal(signal.SIGTERM, interrupt)  # a plain kill stops the stack too
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, even where started with it ignored (`cmd &`)
    try:
        with running(settings, pg_url, host, ports, dask_workers) as (env, procs):
            if env_file is not None:  # readable by its owner only: it holds the password
                with os.fdopen(os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
                    handle.write("".join(f"{k}={v}\n" for k, v in env.items()))
            shown = {**env, "CURATION_CATALOG_URL": redact(env["CURATION_CATALOG_URL"])}
            print("".join(f"export {k}={v}\n" for k, v in shown.items()), end="", flush=True)
            print(
                f"# logs in {settings.home / STACK_DIR / 'logs'}; Ctrl-C stops the stack", file=sys.stderr, flush=True
            )
            while True:  # a process that dies ends the stack with its name and log
                time.sleep(1)
                procs.check()
    except KeyboardInterrupt:
        pass
