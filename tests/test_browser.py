"""Headless Chromium on the real UIs after a `compare` run: the Prefect deployments (served), the comparison's
pictures as a Prefect artifact, and the MLflow experiment with the parent run and its nested runs.

Everything runs in real processes on free 127.0.0.1 ports: `prefect server start` (its own PREFECT_HOME), the
MLflow UI, `curation serve` and the compare flow. Screenshots are kept under tests/artifacts/browser/.
Skipped when Chromium is missing, except in CI (CI=true), where it fails: `.ci/run` installs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from curation.config import load_settings
from curation.ui import commands, environment, wait_until_up

SHOTS = Path(__file__).parent / "artifacts" / "browser"
METHODS = ["soft:ratio=0.5", "uniform:budget=0.5"]
DEPLOYMENTS = ("nightly-curate", "ingest", "end-to-end", "compare", "retrain")


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed: CI needs it for the browser test (.ci/run installs it with apt-get)")
    pytest.skip("chromium is not installed (apt-get install chromium): the browser test cannot run")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict) -> list | dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def uis(tmp_path_factory):
    """Both servers up, the deployments served, one finished comparison; their addresses."""
    browser = _chromium()
    root = tmp_path_factory.mktemp("browser")
    home = root / "project"
    home.mkdir()
    prefect_port, mlflow_port = _free_port(), _free_port()
    env = {
        **environment("127.0.0.1", prefect_port),
        "CURATION_HOME": str(home),
        "CURATION_DVC": "false",
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_LOGGING_TO_API_ENABLED": "true",
    }
    env.pop("PREFECT_API_URL", None)
    curation = str(Path(sys.executable).parent / "curation")
    subprocess.run(
        [curation, "data", "add", "mnist1d", "--samples", "300"], env=env, cwd=home, check=True, capture_output=True
    )
    procs = []

    def start(cmd, **extra):
        log = open(root / f"{Path(cmd[0]).name}-{len(procs)}.log", "w")  # noqa: SIM115 - the server's, while it runs
        procs.append(
            subprocess.Popen(
                cmd, cwd=home, env={**env, **extra}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )

    settings = load_settings(home=home)
    (home / "mlflow").mkdir()
    servers = commands(settings, prefect_port=prefect_port, mlflow_port=mlflow_port)
    prefect, mlflow = f"http://127.0.0.1:{prefect_port}", f"http://127.0.0.1:{mlflow_port}"
    try:
        start(servers["prefect"])
        start(servers["mlflow"])
        assert wait_until_up(f"{prefect}/api/health", 180), "the Prefect server did not start"
        assert wait_until_up(f"{mlflow}/health", 120), "the MLflow UI did not start"
        api = {"PREFECT_API_URL": f"{prefect}/api"}
        start([curation, "serve", "--version", "mnist1d"], **api)
        flow = (
            f"from flows.compare import compare; compare(version='mnist1d', methods={METHODS!r}, arch='mlp', epochs=1)"
        )
        done = subprocess.run(
            [sys.executable, "-c", flow],
            env={**env, **api},
            cwd=Path(__file__).parents[1],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        for _ in range(120):  # `serve` registers the deployments once its flows are imported
            names = {d["name"] for d in _post(f"{prefect}/api/deployments/filter", {"limit": 20, "offset": 0})}
            if names >= set(DEPLOYMENTS):
                break
            time.sleep(1)
        SHOTS.mkdir(parents=True, exist_ok=True)
        yield {"browser": browser, "prefect": prefect, "mlflow": mlflow, "profile": root / "chromium"}
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def _open(uis, url: str, shot: str, height: int = 900) -> str:
    """Render ``url`` headless (virtual time for the single-page app to fetch and draw); its DOM as text.
    A screenshot goes to tests/artifacts/browser/<shot>.png."""
    flags = [
        uis["browser"],
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--hide-scrollbars",
        f"--window-size=1400,{height}",
        "--virtual-time-budget=20000",
    ]
    pages = {}
    for mode in ("--dump-dom", f"--screenshot={SHOTS / shot}.png"):
        profile = uis["profile"] / f"{shot}{len(pages)}"  # a fresh profile every time
        done = subprocess.run(
            [*flags, f"--user-data-dir={profile}", mode, url], capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stderr[-1000:]
        pages[mode] = done.stdout
    png = (SHOTS / f"{shot}.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000, "the screenshot is blank"
    return pages["--dump-dom"]


def _text(dom: str) -> str:
    """The page's text: tags dropped, white space collapsed."""
    return " ".join(re.sub(r"<[^>]*>", " ", dom).split())


def test_prefect_ui_lists_the_served_deployments_and_shows_the_report(uis):
    from flows.deployments import SILENT_RUNS

    dom = _open(uis, f"{uis['prefect']}/deployments", "prefect-deployments")
    for name in DEPLOYMENTS:
        assert f">{name}<" in dom, name
    assert "At 02:00 AM every day" in dom  # the nightly schedule; retrain has a trigger instead
    automations = _post(f"{uis['prefect']}/api/automations/filter", {"limit": 10, "offset": 0, "sort": "NAME_ASC"})
    assert [a["name"] for a in automations] == [SILENT_RUNS, "retrain on a new version"]  # and a dead run's crash
    assert "Ready" in dom  # the deployments are being served

    [report] = _post(
        f"{uis['prefect']}/api/artifacts/filter",
        {"artifacts": {"key": {"any_": ["comparison-report"]}}, "limit": 1, "offset": 0, "sort": "CREATED_DESC"},
    )
    dom = _open(uis, f"{uis['prefect']}/artifacts/artifact/{report['id']}", "prefect-comparison-report", 2400)
    assert dom.count('src="data:image/png;base64,') == 4  # the four charts, drawn in the page


def test_mlflow_ui_shows_the_comparison_and_its_nested_runs(uis):
    experiment = _get(f"{uis['mlflow']}/api/2.0/mlflow/experiments/get-by-name?experiment_name=mnist1d")
    eid = experiment["experiment"]["experiment_id"]
    runs = _post(f"{uis['mlflow']}/api/2.0/mlflow/runs/search", {"experiment_ids": [eid], "max_results": 50})["runs"]
    names = {r["info"]["run_name"] for r in runs}
    [parent] = [n for n in names if n.startswith("compare-")]
    children = names - {parent}
    assert len(children) == 3 and all(n.startswith("mlp-") for n in children)

    dom = _open(uis, f"{uis['mlflow']}/#/experiments/{eid}/runs", "mlflow-experiment")
    assert parent in _text(dom), "the parent run is not on the experiment page"
    assert "4 matching runs" in _text(dom)  # the three nested runs are folded under their parent
    ids = urllib.parse.quote(json.dumps([r["info"]["run_id"] for r in runs]))
    dom = _open(uis, f"{uis['mlflow']}/#/compare-runs?runs={ids}&experiments=%5B%22{eid}%22%5D", "mlflow-compare-runs")
    for name in names:
        assert name in _text(dom), name
