"""A training run in the catalog: its row from start to end, its model, the runs it can resume or compare to.

Each function is one transaction, so a crash leaves a run RUNNING (resumable) or FAILED, never
half-finished: the FINISHED status, the final ledger and the ModelVersion row commit together.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select

from curation.catalog import Catalog, ModelVersion, SelectionPlan, TrainingRun
from curation.choices import RunStatus
from curation.errors import CurationError
from curation.metrics.efficiency import Curve

RUNNING, FINISHED, FAILED = (status.value for status in RunStatus)  # plain strings, as stored


def start_run(catalog: Catalog, version_id: int, plan_id: int | None, architecture: str, params: dict) -> int:
    with catalog.session() as s:
        run = TrainingRun(
            version_id=version_id, plan_id=plan_id, architecture=architecture, params=params, status=RUNNING
        )
        s.add(run)
        s.flush()
        return run.id


def set_mlflow_run(catalog: Catalog, run_id: int, mlflow_run_id: str) -> None:
    with catalog.session() as s:
        s.get(TrainingRun, run_id).mlflow_run_id = mlflow_run_id


def mark_failed(catalog: Catalog, run_id: int) -> None:
    """FAILED, unless the run already finished (a late error must not undo a committed result)."""
    with catalog.session() as s:
        run = s.get(TrainingRun, run_id)
        if run is not None and run.status != FINISHED:
            run.status, run.ended_at = FAILED, datetime.now(UTC)


def running(catalog: Catalog) -> list[int]:
    """Ids of the runs the catalog shows RUNNING."""
    with catalog.session() as s:
        return list(s.scalars(select(TrainingRun.id).where(TrainingRun.status == RUNNING)))


def reopen(catalog: Catalog, run_id: int) -> None:
    """RUNNING again: a resumed run (a killed run is marked FAILED by the next start, and stays resumable)."""
    with catalog.session() as s:
        run = s.get(TrainingRun, run_id)
        run.status, run.ended_at = RUNNING, None


def finish_run(catalog: Catalog, run_id: int, ledger: dict, metrics: dict, model: dict) -> int:
    """FINISHED with the final ledger and metrics, and the trained model's row; returns the model's id."""
    with catalog.session() as s:
        run = s.get(TrainingRun, run_id)
        run.status, run.ended_at, run.ledger, run.metrics = FINISHED, datetime.now(UTC), ledger, metrics
        version = ModelVersion(run_id=run_id, **model)
        s.add(version)
        s.flush()
        return version.id


def interrupted_run(
    catalog: Catalog, version_id: int, architecture: str, params: dict, resumable: Callable[[int], bool]
) -> TrainingRun:
    """The newest unfinished, ``resumable`` run of this version with these params (what ``--resume`` continues)."""
    with catalog.session() as s:
        candidates = s.scalars(
            select(TrainingRun)
            .where(
                TrainingRun.version_id == version_id,
                TrainingRun.architecture == architecture,
                TrainingRun.status != FINISHED,
            )
            .order_by(TrainingRun.id.desc())
        )
        for run in candidates:
            if _same(run.params, params) and resumable(run.id):
                return run
    raise CurationError(
        f"no interrupted {architecture} run of version {version_id} with these settings to resume",
        "drop --resume to start a new run, or repeat the interrupted run's options exactly",
    )


def _same(a: dict, b: dict) -> bool:
    """Params equal but for the device and the number of processes, which a resumed run may change."""
    free = {"device", "nproc"}
    return {k: v for k, v in a.items() if k not in free} == {k: v for k, v in b.items() if k not in free}


def plan_row(catalog: Catalog, content_hash: str) -> SelectionPlan | None:
    """The catalog's record of a plan file, found by the file's md5."""
    with catalog.session() as s:
        return s.scalar(
            select(SelectionPlan)
            .where(SelectionPlan.content_hash == content_hash)
            .order_by(SelectionPlan.id.desc())
            .limit(1)
        )


def plan_ledger(catalog: Catalog, plan_id: int) -> dict:
    """The selection cost a stored plan recorded (a ComputeLedger dict)."""
    with catalog.session() as s:
        row = s.get(SelectionPlan, plan_id)
        return dict(row.ledger or {}) if row is not None else {}


def run_curve(catalog: Catalog, run_id: int) -> Curve:
    """The accuracy-vs-compute curve of a finished run (a baseline to compare against)."""
    with catalog.session() as s:
        run = s.get(TrainingRun, run_id)
        if run is None or run.status != FINISHED or not run.metrics.get("history"):
            raise CurationError(
                f"baseline run {run_id} is not a finished training run",
                "give the catalog id of a finished run (`curation train --json` prints it)",
            )
        return Curve.from_history(run.metrics["history"])
