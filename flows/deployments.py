"""Every deployment with its schedule or trigger, in one place.

`curation serve` serves them in its own process; `curation serve --work-pool NAME` registers them in a
process work pool instead (the flows loaded from this checkout, no image, no remote storage), and
`prefect worker start --pool NAME` runs each flow run in a subprocess. Retraining is started by the
`curation.version.added` event the ingest flow emits (flows/events.py), not by polling.

Every flow run sends a heartbeat every ``HEARTBEAT_S`` seconds; a run whose heartbeats stop (its worker or
machine died with it) is marked CRASHED by the ``crash_silent_runs`` automation, so it never stays RUNNING.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path

from prefect import Flow, serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy, StateType
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from flows.compare import compare
from flows.curate import curate
from flows.end_to_end import end_to_end
from flows.events import DATASET_RESOURCE, VERSION_ADDED
from flows.ingest import ingest
from flows.retrain import retrain

NIGHTLY = "0 2 * * *"  # 02:00 every night
SOURCE_ROOT = Path(__file__).resolve().parent.parent  # the checkout a worker loads the flows from
HEARTBEAT_S = 30  # the shortest Prefect allows
SILENT_RUNS = "curation: crash flow runs whose heartbeats stopped"


def retrain_trigger() -> DeploymentEventTrigger:
    """Start a retrain run for the data set that just got a new version (one event, one run)."""
    return DeploymentEventTrigger(
        name="retrain on a new version",
        expect={VERSION_ADDED},
        match={"prefect.resource.id": f"{DATASET_RESOURCE}.*"},
        parameters={"dataset": "{{ event.payload.dataset }}"},
    )


def crash_silent_runs() -> AutomationCore:
    """Mark CRASHED a flow run that sent no heartbeat (nor a final state) for 3 heartbeats: its process died
    with its worker or machine. What it left in the catalog is finished by the next start (the run FAILED,
    resumable); rerun the deployment to redo its work."""
    ended = {f"prefect.flow-run.{state}" for state in ("Completed", "Failed", "Cancelled", "Crashed")}
    return AutomationCore(
        name=SILENT_RUNS,
        description=f"A flow run sends a heartbeat every {HEARTBEAT_S} s; three missed ones mean it died.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat"} | ended,
            match={"prefect.resource.id": "prefect.flow-run.*"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=3 * HEARTBEAT_S),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message="its heartbeats stopped: the process died")],
    )


async def _ensure_automation(automation: AutomationCore) -> None:
    """Create ``automation`` unless one of its name exists (registering again changes nothing)."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        if not await client.read_automations_by_name(automation.name):
            await client.create_automation(automation)


def _deployment(flow: Flow, entrypoint: str, name: str, work_pool: str | None, **options) -> RunnerDeployment:
    if work_pool is None:
        return flow.to_deployment(name, **options)
    heartbeat = {"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)}}  # whichever worker runs it
    return flow.from_source(str(SOURCE_ROOT), entrypoint).to_deployment(
        name, work_pool_name=work_pool, job_variables=heartbeat, **options
    )


def deployments(version: str = "mnist1d", work_pool: str | None = None) -> list[RunnerDeployment]:
    """The deployments `curation serve` registers: nightly curation, ingest, end-to-end and compare on
    demand, retraining on every new version (one run at a time; the others wait their turn)."""
    return [
        _deployment(
            curate,
            "flows/curate.py:curate",
            "nightly-curate",
            work_pool,
            cron=NIGHTLY,
            parameters={"version": version},
            description="Select a fresh soft-sampling plan for the newest version every night.",
            tags=["curation"],
        ),
        _deployment(
            ingest,
            "flows/ingest.py:ingest",
            "ingest",
            work_pool,
            description=f"Add a data set version (run on demand from the UI); a new version emits {VERSION_ADDED}.",
            tags=["curation"],
        ),
        _deployment(
            end_to_end,
            "flows/end_to_end.py:end_to_end",
            "end-to-end",
            work_pool,
            description="Ingest, score, curate and train in one flow run (the chain dvc repro runs), on demand.",
            tags=["curation"],
        ),
        _deployment(
            compare,
            "flows/compare.py:compare",
            "compare",
            work_pool,
            parameters={"version": version},
            description="Compare selection methods with the full-data baseline at equal compute "
            "(nested MLflow runs, a table and report pictures).",
            tags=["curation"],
        ),
        _deployment(
            retrain,
            "flows/retrain.py:retrain",
            "retrain",
            work_pool,
            parameters={"dataset": version},
            triggers=[retrain_trigger()],
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
            description=f"Train the lineage on the chunks that landed since its last run; started by "
            f"{VERSION_ADDED} for that data set.",
            tags=["curation"],
        ),
    ]


def serve_all(version: str = "mnist1d") -> None:
    """Register the deployments with the Prefect server (PREFECT_API_URL) and run their flows until stopped."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.utilities.asyncutils import run_coro_as_sync

    run_coro_as_sync(_ensure_automation(crash_silent_runs()))
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: HEARTBEAT_S}):
        serve(*deployments(version))


def deploy_all(version: str, work_pool: str) -> list[str]:
    """Create the process work pool ``work_pool`` if missing and register the deployments in it; their ids.

    `prefect worker start --pool <work_pool>` (started with the project's CURATION_* environment) runs them.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def ensure_pool() -> None:
        async with get_client() as client:
            with contextlib.suppress(ObjectAlreadyExists):  # registering again keeps the pool
                await client.create_work_pool(WorkPoolCreate(name=work_pool, type="process"))

    run_coro_as_sync(ensure_pool())
    run_coro_as_sync(_ensure_automation(crash_silent_runs()))
    # each deployment's apply() is what prefect.deploy() ends with; deploy() itself is not used: in Prefect
    # 3.8 it first lists the pool's workers with limit=None, which the server rejects (422)
    return [str(d.apply(work_pool_name=work_pool)) for d in deployments(version, work_pool)]
