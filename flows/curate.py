"""The `curate` flow: select a subset or per-epoch plan from a data set version and record it."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from curation.choices import Engine
from curation.config import load_settings
from curation.errors import CurationError
from curation.selection.run import select_plan
from flows._artifacts import record_table, rows_table


@task(name="select-plan", cache_policy=NO_CACHE)
def select(version: str, method: str, params: dict, score_set: int | None) -> dict:
    info, _ = select_plan(load_settings(), version, method, params, score_set)
    return info.to_dict()


@task(name="select-plan-on-dask", cache_policy=NO_CACHE)
def select_on_dask(settings, version: str, params: dict, score_set: int | None) -> dict:
    """Distributed pairwise selection on this task runner's cluster, its progress in a progress artifact."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact
    from prefect_dask import get_dask_client

    from curation.distributed.run import select_distributed

    artifact, shown = create_progress_artifact(0.0, key="distributed-selection", description="starting"), [0]

    def report(progress) -> None:
        percent = int(100 * progress.fraction)
        if percent > shown[0]:
            update_progress_artifact(artifact, percent, description=progress.stage)
            shown[0] = percent

    with get_dask_client() as client:
        info, selection = select_distributed(settings, version, params, score_set, client=client, report=report)
    update_progress_artifact(artifact, 100, description="done")
    rows_table(
        "distributed-rounds",
        selection.bounding + selection.rounds,
        f"Plan {info.id}: bounding passes, then partition greedy rounds",
    )
    return info.to_dict()


@flow(name="curate-on-dask")
def curate_on_dask(settings, version: str, params: dict, score_set: int | None) -> dict:
    return select_on_dask.submit(settings, version, params, score_set).result()


@flow(name="curate", log_prints=True)
def curate(
    version: str = "mnist1d",
    method: str = "soft",
    params: dict | None = None,
    score_set: int | None = None,
    engine: Engine = Engine.local,
    scheduler: str | None = None,
) -> dict:
    """Select with ``method`` (see `curation methods`) on ``version``'s train split; returns the plan record.

    ``engine="dask"`` runs the pairwise method on a Dask cluster (prefect-dask's DaskTaskRunner): a
    LocalCluster, or the scheduler at ``scheduler`` (tcp://host:port).
    """
    if engine != "dask":
        return curate_steps(version, method, params, score_set)
    from prefect_dask import DaskTaskRunner

    if method not in ("pairwise", "pairwise-distributed"):
        raise CurationError(f"engine dask runs the pairwise method, not {method!r}", "give method='pairwise'")
    runner = (
        DaskTaskRunner(address=scheduler)
        if scheduler
        else DaskTaskRunner(cluster_kwargs={"threads_per_worker": 1, "processes": True, "dashboard_address": None})
    )
    plan = curate_on_dask.with_options(task_runner=runner)(load_settings(), version, params or {}, score_set)
    return _published(plan)


def curate_steps(version: str, method: str = "soft", params: dict | None = None, score_set: int | None = None) -> dict:
    """The curate flow's local selection and artifact, inside the calling flow (``curate`` or ``end-to-end``)."""
    return _published(select(version, method, params or {"ratio": 0.1, "seed": 0}, score_set))


def _published(plan: dict) -> dict:
    record_table("selection-plan", plan, f"Plan {plan['id']}: {plan['method']} on version {plan['version_id']}")
    print(f"plan {plan['id']}: {plan['method']} {plan['params']}")
    return plan


if __name__ == "__main__":
    curate()
