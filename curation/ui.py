"""`make ui`: a local Prefect server and the MLflow UI, both bound to 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from curation.catalog import redact
from curation.config import Settings
from curation.errors import CurationError


def tool(name: str) -> str:
    """The path of a command of this environment (MLflow, Prefect, Dask, curation), else the one on PATH."""
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        raise CurationError(f"{name} is not installed in this environment", "run `make install`")
    return found


def commands(
    settings: Settings, host: str = "127.0.0.1", prefect_port: int = 4200, mlflow_port: int = 5000
) -> dict[str, list[str]]:
    """The two server commands (exposed for tests and for users who run them by hand)."""
    artifacts = settings.home / "mlflow" / "artifacts"
    return {
        "prefect": [tool("prefect"), "server", "start", "--host", host, "--port", str(prefect_port)],
        "mlflow": [
            tool("mlflow"),
            "ui",
            "--backend-store-uri",
            settings.tracking,
            "--default-artifact-root",
            str(artifacts),
            "--host",
            host,
            "--port",
            str(mlflow_port),
            "--workers",
            "1",
        ],
    }


def environment(host: str = "127.0.0.1", prefect_port: int = 4200) -> dict[str, str]:
    """The servers' environment: no analytics, and the Prefect UI calling its own API (it defaults to port 4200)."""
    return {
        **os.environ,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": f"http://{host}:{prefect_port}/api",
    }


def wait_until_up(url: str, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return False


def interrupt(signum, frame) -> None:
    """A signal handler that turns SIGTERM into Ctrl-C, so a plain kill stops the servers too."""
    raise KeyboardInterrupt


def run(settings: Settings, host: str = "127.0.0.1", prefect_port: int = 4200, mlflow_port: int = 5000) -> None:
    """Start both servers, print their addresses, stop both on Ctrl-C."""
    (settings.home / "mlflow").mkdir(parents=True, exist_ok=True)
    env = environment(host, prefect_port)
    server = settings.tracking.startswith(("http://", "https://"))  # a tracking server has its own UI
    procs = {
        name: subprocess.Popen(cmd, cwd=settings.home, env=env, start_new_session=True)
        for name, cmd in commands(settings, host, prefect_port, mlflow_port).items()
        if not (server and name == "mlflow")
    }
    urls = {
        "prefect": f"http://{host}:{prefect_port}",
        "mlflow": redact(settings.tracking) if server else f"http://{host}:{mlflow_port}",
    }
    signal.signal(signal.SIGTERM, interrupt)  # a plain kill stops both servers too
    try:
        for name, url in urls.items():
            health = f"{url}/api/health" if name == "prefect" else f"{url}/health"
            state = "up" if wait_until_up(health) else "not answering yet"
            print(f"{name:8} {url}  ({state})", flush=True)
        print("Prefect flows need PREFECT_API_URL=" + urls["prefect"] + "/api ; Ctrl-C stops both.", flush=True)
        while all(p.poll() is None for p in procs.values()):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            proc.wait(timeout=30)
