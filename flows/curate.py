"""The `curate` flow: select a subset or per-epoch plan from a data set version and record it."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from curation.config import load_settings
from curation.selection.run import select_plan


@task(name="select-plan", cache_policy=NO_CACHE)
def select(version: str, method: str, params: dict, score_set: int | None) -> dict:
    info, _ = select_plan(load_settings(), version, method, params, score_set)
    return info.to_dict()


@flow(name="curate", log_prints=True)
def curate(version: str = "mnist1d", method: str = "soft", params: dict | None = None,
           score_set: int | None = None) -> dict:
    """Select with ``method`` (see `curation methods`) on ``version``'s train split; returns the plan record."""
    plan = select(version, method, params or {"ratio": 0.1, "seed": 0}, score_set)
    create_table_artifact(key="selection-plan", table=[{"field": k, "value": str(v)} for k, v in plan.items()],
                          description=f"Plan {plan['id']}: {plan['method']} on version {plan['version_id']}")
    print(f"plan {plan['id']}: {plan['method']} {plan['params']}")
    return plan


if __name__ == "__main__":
    curate()
