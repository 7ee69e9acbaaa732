"""The project on the servers teams run, every component its own process on 127.0.0.1 (`curation stack`):
a PostgreSQL catalog, an MLflow server with a PostgreSQL store, a Prefect server with a process worker, a Dask
scheduler and 2 workers, and a DVC folder remote. Ingest runs on the worker, select and train run as a user
runs them, a new chunk's event starts the retrain run (nothing polls), and everything lands in the servers."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pyarrow.parquet as pq
import pytest

from curation.data.stream import drifting_mnist1d
from curation.stack import free_port

CURATION = str(Path(sys.executable).parent / "curation")
FAST_RETRAIN = {"arch": "mlp", "epochs": 1, "passes": 1, "min_samples": 1, "device": "cpu"}


@pytest.fixture
def stack(pg_database, tmp_path):
    """`curation stack` in a subprocess on free ports; its environment (read from --env-file) with the project."""
    home = tmp_path / "project"
    home.mkdir()
    catalog = pg_database("e2e", ("", "_mlflow"))
    env_file = tmp_path / "stack.env"
    env = {**os.environ, "CURATION_HOME": str(home), "PREFECT_WORKER_QUERY_SECONDS": "2"}  # the worker asks for
    env.pop("PREFECT_API_URL", None)  # work every 2 s, not 10
    with open(tmp_path / "stack.log", "w") as log:
        proc = subprocess.Popen(
            [
                CURATION,
                "stack",
                "--pg-url",
                catalog,
                "--mlflow-port",
                str(free_port()),
                "--prefect-port",
                str(free_port()),
                "--dask-port",
                str(free_port()),
                "--env-file",
                str(env_file),
            ],
            cwd=home,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while not env_file.exists():
            assert proc.poll() is None, (tmp_path / "stack.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the stack did not come up in 300 s"
            time.sleep(1)
        exported = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        yield {**env, **exported}, home, tmp_path
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the stack stops every process it started
        assert proc.wait(timeout=120) == 0, (tmp_path / "stack.log").read_text()[-2000:]


def prefect(env, work):
    """Run ``work(client)`` against the stack's Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def call():
        with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
            async with get_client() as client:
                return await work(client)

    return anyio.run(call)


def runs_of(env, name: str) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    async def read(client):  # sort and limit given: Prefect 3.8's server refuses the client's None defaults
        return await client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=50,
        )

    return prefect(env, read)


def wait_for(env, name: str, count: int, timeout_s: float = 240) -> list:
    """The deployment's flow runs once ``count`` of them are in a final state (fails on timeout)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = runs_of(env, name)
        if sum(r.state.is_final() for r in runs if r.state) >= count:
            return runs
        time.sleep(2)
    pytest.fail(
        f"{count} {name} runs did not finish in {timeout_s:.0f} s: "
        f"{[(r.name, r.state.type.value if r.state else None) for r in runs_of(env, name)]}"
    )


def ingest_on_the_worker(env, path: Path):
    from prefect.deployments import run_deployment

    async def run(client):
        return await run_deployment(
            "ingest/ingest",
            parameters={"source": str(path), "name": "stream", "id_column": "sample_id"},
            timeout=0,
            client=client,
        )

    return prefect(env, run)


def cli(command: str, *more: str) -> dict | list:
    """``curation <command> <more...> --json`` in this process (the stack's environment is set): saves a start-up
    per command."""
    from typer.testing import CliRunner

    from curation.cli import app

    result = CliRunner().invoke(app, [*command.split(), *more, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.postgres
def test_ingest_select_train_and_event_driven_retrain_across_servers(stack, monkeypatch):
    from prefect.client.schemas.actions import DeploymentUpdate

    from curation.catalog import Catalog, TrainingRun
    from mlflow import MlflowClient

    env, home, tmp = stack
    for key in ("CURATION_HOME", "CURATION_CATALOG_URL", "CURATION_TRACKING_URI"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.chdir(home)
    from distributed import Client

    with Client(env["DASK_SCHEDULER_ADDRESS"], timeout=30) as dask:  # the 2 workers have joined the scheduler
        assert len(dask.wait_for_workers(2, timeout=60) or dask.scheduler_info()["workers"]) == 2
    remote = tmp / "dvc-remote"
    cli("init --remote", str(remote))

    async def fast_retrain(client):  # what a user sets in the deployment's parameters (UI or API)
        deployment = await client.read_deployment_by_name("retrain/retrain")
        await client.update_deployment(
            deployment.id, DeploymentUpdate(parameters={**deployment.parameters, **FAST_RETRAIN})
        )
        return deployment

    retrain_deployment = prefect(env, fast_retrain)
    assert retrain_deployment.schedules == [] and retrain_deployment.work_pool_name == "curation"
    chunks = []
    for c in range(2):
        chunks.append(tmp / f"chunk{c}.parquet")
        pq.write_table(drifting_mnist1d(c, samples=240, seed=3).table, chunks[-1])

    ingest_on_the_worker(env, chunks[0])
    [first] = wait_for(env, "ingest", 1)
    assert first.state.is_completed() and first.work_pool_name == "curation"
    wait_for(env, "retrain", 1)  # the first chunk's model, before the next chunk arrives (else one run takes both)
    dask = env["DASK_SCHEDULER_ADDRESS"]  # the stack's 2 Dask workers score the train split by row groups
    scores = cli("score stream --arch mlp --epochs 1 --device cpu --engine dask --scheduler", dask)
    plan = cli("select stream -m topk -p score=el2n --budget 0.5 --score-set", str(scores["id"]))
    trained = cli("train stream --arch mlp --epochs 1 --device cpu --nproc 2 --plan", str(plan["id"]))
    ingest_on_the_worker(env, chunks[1])

    ingests = wait_for(env, "ingest", 2)
    retrains = wait_for(env, "retrain", 2)
    assert all(r.state.is_completed() for r in ingests + retrains), [r.state for r in ingests + retrains]
    assert {r.created_by.type for r in retrains} == {"AUTOMATION"}  # the event's trigger, not a schedule
    assert {r.parameters["dataset"] for r in retrains} == {"stream"}

    catalog = Catalog(env["CURATION_CATALOG_URL"])
    versions = catalog.versions("stream")
    assert len(versions) == 2
    with catalog.session() as s:
        lineage = [r.params["chunks"] for r in s.query(TrainingRun).order_by(TrainingRun.id) if "chunks" in r.params]
    assert lineage == [[versions[0].id], [versions[1].id]]  # each chunk trained once, in order

    client = MlflowClient(env["CURATION_TRACKING_URI"])
    experiment = client.get_experiment_by_name("stream")
    runs = client.search_runs([experiment.experiment_id])
    assert {r.info.status for r in runs} == {"FINISHED"} and len(runs) == 3
    [plan_run] = [r for r in runs if r.info.run_id == trained["mlflow_run_id"]]
    assert plan_run.inputs.dataset_inputs[0].dataset.digest == versions[0].content_hash
    assert client.get_model_version_by_alias("stream-proactive", "champion").version in {"1", "2"}

    held = {p.parent.name + p.name for p in (remote / "files" / "md5").glob("*/*")}
    assert held == {v.content_hash for v in versions}  # every version went through the DVC remote


def test_every_service_binds_loopback_unless_told(tmp_path):
    from curation.stack import dask_scheduler, dask_worker, mlflow_server, prefect_server

    for service in (
        mlflow_server("postgresql+psycopg://u@h/db", tmp_path, "127.0.0.1", 5000),
        prefect_server(tmp_path, "127.0.0.1", 4200),
        dask_scheduler("127.0.0.1", 8786),
        dask_worker("tcp://127.0.0.1:8786", "127.0.0.1", 1),
    ):
        assert service.command[service.command.index("--host") + 1] == "127.0.0.1", service.name
        assert not any("postgresql" in part for part in service.command)  # a store's password stays out of `ps`


def test_stack_without_postgres_is_a_one_line_error(home):
    from typer.testing import CliRunner

    from curation.cli import app

    result = CliRunner().invoke(app, ["stack"])
    assert result.exit_code == 2 and "--pg-url" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["stack", "--pg-url", "sqlite:///x.db"])
    assert result.exit_code == 2 and "not a PostgreSQL URL with the psycopg driver" in result.output
