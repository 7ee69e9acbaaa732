"""The project on the servers teams run, every component its own process on 127.0.0.1 (`curation stack`):
a PostgreSQL catalog, an MLflow server with a PostgreSQL store, a Prefect server with a process worker, a Dask
scheduler and 2 workers, and a DVC folder remote. Ingest runs on the worker, select and train run as a user
runs them, a new chunk's event starts the retrain run (nothing polls), and everything lands in the servers.
The Prefect worker is killed (with its flow run) mid-retrain: the run is marked CRASHED, the stack starts the
worker again and the rerun completes the work."""

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

from curation.data.store import file_md5
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
        yield {**env, **exported}, home, tmp_path, proc.pid
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


def kill_the_prefect_worker(stack_pid: int) -> None:
    """SIGKILL the stack's Prefect worker and its flow-run processes, as when its machine dies."""
    import psutil

    [worker] = [p for p in psutil.Process(stack_pid).children() if "worker" in p.cmdline() and "start" in p.cmdline()]
    for process in [worker, *worker.children(recursive=True)]:
        process.kill()
    psutil.wait_procs([worker], timeout=10)


def wait_until(check, what: str, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout_s:.0f} s"
        time.sleep(1)
    return found


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

    env, home, tmp, stack_pid = stack
    for key in ("CURATION_HOME", "CURATION_CATALOG_URL", "CURATION_TRACKING_URI"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.chdir(home)
    from distributed import Client

    with Client(env["DASK_SCHEDULER_ADDRESS"], timeout=30) as dask:  # the 2 workers have joined the scheduler
        assert len(dask.wait_for_workers(2, timeout=60) or dask.scheduler_info()["workers"]) == 2
    remote = tmp / "dvc-remote"
    cli("init --remote", str(remote))

    def retrain_parameters(**more):  # what a user sets in the deployment's parameters (UI or API)
        async def update(client):
            deployment = await client.read_deployment_by_name("retrain/retrain")
            await client.update_deployment(deployment.id, DeploymentUpdate(parameters={"dataset": "stream", **more}))
            return deployment

        return prefect(env, update)

    retrain_deployment = retrain_parameters(**FAST_RETRAIN)
    assert retrain_deployment.schedules == [] and retrain_deployment.work_pool_name == "curation"
    chunks = []
    for c in range(2):
        chunks.append(tmp / f"chunk{c}.parquet")
        pq.write_table(drifting_mnist1d(c, samples=240, seed=3).table, chunks[-1])

    ingest_on_the_worker(env, chunks[0])
    [first] = wait_for(env, "ingest", 1)
    assert first.state.is_completed() and first.work_pool_name == "curation"
    wait_for(env, "retrain", 1)  # the first chunk's model, before the next chunk arrives (else one run takes both)

    retrain_parameters(**{**FAST_RETRAIN, "passes": 100_000})  # the next retrain runs until its worker dies
    ingest_on_the_worker(env, chunks[1])
    catalog = Catalog(env["CURATION_CATALOG_URL"])

    def tracked_and_running():
        with catalog.session() as s:
            return [r.id for r in s.query(TrainingRun).filter_by(status="RUNNING") if r.mlflow_run_id]

    running = wait_until(tracked_and_running, "a RUNNING retrain run in the catalog and MLflow")
    kill_the_prefect_worker(stack_pid)

    dask = env["DASK_SCHEDULER_ADDRESS"]  # meanwhile, the stack's 2 Dask workers score the train split by row groups
    scores = cli("score stream --arch mlp --epochs 1 --device cpu --engine dask --scheduler", dask)
    plan = cli("select stream -m topk -p score=el2n --budget 0.5 --score-set", str(scores["id"]))
    trained = cli("train stream --arch mlp --epochs 1 --device cpu --nproc 2 --plan", str(plan["id"]))

    [killed] = [r for r in wait_for(env, "retrain", 2, timeout_s=240) if not r.state.is_completed()]
    assert killed.state.is_crashed() and "heartbeats stopped" in killed.state.message, killed.state
    assert "prefect-worker exited with code -9: started again" in (tmp / "stack.log").read_text()
    retrain_parameters(**FAST_RETRAIN)
    from prefect.deployments import run_deployment

    async def rerun(client):  # a user reruns the crashed run; the restarted worker takes it
        return await run_deployment("retrain/retrain", parameters=killed.parameters | FAST_RETRAIN, client=client)

    rerun = prefect(env, rerun)
    assert rerun.state.is_completed(), rerun.state
    ingests, retrains = wait_for(env, "ingest", 2), wait_for(env, "retrain", 3)
    assert all(r.state.is_completed() for r in ingests) and [r.state.type.value for r in retrains] == [
        "COMPLETED",
        "CRASHED",
        "COMPLETED",
    ]
    assert [r.created_by.type for r in retrains[:2]] == ["AUTOMATION"] * 2  # the event's trigger, not a schedule
    assert {r.parameters["dataset"] for r in retrains} == {"stream"}

    versions = catalog.versions("stream")
    assert len(versions) == 2
    with catalog.session() as s:
        runs = {r.id: r for r in s.query(TrainingRun).order_by(TrainingRun.id)}
    [killed_run] = running
    assert runs[killed_run].status == "FAILED"  # ended by the rerun, which did its work
    lineage = [r.params["chunks"] for r in runs.values() if "chunks" in r.params and r.status == "FINISHED"]
    assert lineage == [[versions[0].id], [versions[1].id]]  # each chunk trained once, in order

    client = MlflowClient(env["CURATION_TRACKING_URI"])
    experiment = client.get_experiment_by_name("stream")
    statuses = {r.info.run_id: r.info.status for r in client.search_runs([experiment.experiment_id])}
    assert statuses.pop(runs[killed_run].mlflow_run_id) == "FAILED"
    assert set(statuses.values()) == {"FINISHED"} and len(statuses) == 3
    plan_run = client.get_run(trained["mlflow_run_id"])
    assert plan_run.inputs.dataset_inputs[0].dataset.digest == versions[1].content_hash
    assert client.get_model_version_by_alias("stream-proactive", "champion").version in {"1", "2"}

    held = {p.parent.name + p.name for p in (remote / "files" / "md5").glob("*/*")}
    shards = {file_md5(f) for v in versions for f in (home / v.path).iterdir()}
    assert held == {v.content_hash for v in versions} | shards  # every version (listing and shards) went through it


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


def test_a_dead_worker_is_started_again_and_a_dead_server_ends_the_stack(tmp_path):
    from curation.errors import CurationError
    from curation.stack import Processes, Service

    procs = Processes(tmp_path / "logs", dict(os.environ))
    worker = procs.start(Service("worker", ["sleep", "60"], restart=True), tmp_path)
    server = procs.start(Service("server", ["sleep", "60"]), tmp_path)
    try:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        procs.check()
        assert procs.procs["worker"].pid != worker.pid and procs.procs["worker"].poll() is None
        for _ in range(Processes.MAX_RESTARTS - 1):
            os.killpg(procs.procs["worker"].pid, signal.SIGKILL)
            procs.procs["worker"].wait()
            procs.check()
        os.killpg(procs.procs["worker"].pid, signal.SIGKILL)  # one death too many
        procs.procs["worker"].wait()
        with pytest.raises(CurationError, match="worker exited with code -9"):
            procs.check()
        procs.start(Service("worker", ["sleep", "60"], restart=True), tmp_path)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        with pytest.raises(CurationError, match="server exited with code -9"):
            procs.check()
    finally:
        procs.stop()
