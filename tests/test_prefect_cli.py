"""Prefect's own CLI against the project's deployments on a real server: what a user types beside `curation serve`.

With fastapi>=0.151 under Prefect 3.8 the server rejected the CLI's explicit nulls ("422 ... 'limit': Input
should be a valid integer"), so the three list commands ended in a traceback; pyproject.toml pins fastapi below.
"""

import os
import subprocess
import sys
from pathlib import Path


def _prefect(*args: str, env: dict) -> str:
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("prefect")), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, (
        f"prefect {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
    )
    return proc.stdout


def test_prefect_lists_the_served_deployments_their_flow_runs_and_work_pools(prefect_server):
    from prefect.settings import PREFECT_API_URL

    from flows.deployments import deployments

    served = deployments()
    for deployment in served:
        deployment.apply()
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "COLUMNS": "250"}  # rich wraps narrower tables

    listed = _prefect("deployment", "ls", env=env)
    for deployment in served:
        assert f"{deployment.flow_name}/{deployment.name}" in listed, listed

    # a run that stays scheduled (nothing serves it here), named so that the listing can be checked
    _prefect(
        "deployment", "run", "compare/compare", "--param", "version=nosuch", "--flow-run-name", "cli-check", env=env
    )
    runs = _prefect("flow-run", "ls", env=env)
    assert "cli-check" in runs and "SCHEDULED" in runs, runs

    _prefect("work-pool", "create", "cli-pool", "--type", "process", env=env)
    assert "cli-pool" in _prefect("work-pool", "ls", env=env)
