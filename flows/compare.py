"""The `compare` flow: methods and budgets against the full-data baseline, as nested MLflow runs under one parent.

The loop is the library's (``curation.compare.run``); the flow passes it its select and train steps as tasks.
Pure steps are cached (Prefect cache keyed on the inputs and the task's code, results persisted):
scoring a version and selecting a plan for (version, method, params, seed) run once per project; a
second comparison reuses the score set and the plans and only trains. Training retries once on errors
that are not the user's. The table and the report's PNGs go to the parent MLflow run and to Prefect.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from curation import compare as comparison
from curation import reports
from curation.choices import Device
from curation.config import Settings, load_settings
from curation.scoring.run import score_version
from curation.selection.run import PlanInfo, plans, select_plan
from curation.training.config import TrainConfig
from flows._artifacts import images, rows_table
from flows._tasks import PURE, transient


def _project(settings: Settings) -> dict:
    """What names a project in a cache key: a cached plan id is only valid in the catalog that holds it."""
    return {"home": str(settings.home), "catalog": settings.catalog}


@task(name="score-version-cached", cache_policy=PURE, persist_result=True)
def score_cached(project: dict, version_id: int, content_hash: str, epochs: int, seed: int) -> dict:
    return score_version(load_settings(), version_id, epochs=epochs, seed=seed).to_dict()


@task(name="select-plan-cached", cache_policy=PURE, persist_result=True)
def select_cached(
    project: dict, version_id: int, content_hash: str, method: str, params: dict, score_set: int | None
) -> dict:
    info, _ = select_plan(load_settings(), version_id, method, params, score_set)
    return info.to_dict()


@task(name="train-compared", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=1, retry_condition_fn=transient)
def train_compared(
    version_id: int,
    config: dict,
    method: str = "full",
    params: dict | None = None,
    plan: PlanInfo | None = None,
    baseline: int | None = None,
) -> comparison.Row:
    return comparison.train_row(load_settings(), version_id, TrainConfig(**config), method, params, plan, baseline)


def _select(settings: Settings, key: tuple, name: str, params: dict, score_set: int | None) -> PlanInfo:
    """The cached plan, selected afresh when the catalog no longer holds it (e.g. the project was rebuilt)."""
    plan = select_cached(*key, name, params, score_set)
    if not any(p.id == plan["id"] and p.method == plan["method"] for p in plans(settings, key[1])):
        plan = select_cached.with_options(refresh_cache=True)(*key, name, params, score_set)
    return PlanInfo(**plan)


@flow(name="compare", log_prints=True)
def compare(
    version: str = "mnist1d",
    methods: list[str] | None = None,
    arch: str | None = None,
    epochs: int | None = None,
    seed: int = 0,
    device: Device = Device.auto,
    baseline: int | None = None,
    score_set: int | None = None,
    score_epochs: int | None = None,
    budgets: list[float] | None = None,
) -> list[dict]:
    """Train the baseline (unless ``baseline`` is a finished run) and each ``methods`` entry ('soft:ratio=0.3',
    'infobatch:prune=0.5') at equal compute, or at each of ``budgets`` beside full-shortened; ``score_epochs``
    first scores the version (cached) for score-based methods."""
    settings = load_settings()
    setup = comparison.setup(
        settings,
        version,
        methods or ["soft:ratio=0.3", "uniform:budget=0.3"],
        TrainConfig.make(arch=arch, epochs=epochs, seed=seed, device=device),
        budgets or (),
    )
    info = setup.info
    key = (_project(settings), info.id, info.content_hash)
    if score_set is None and score_epochs:
        score_set = score_cached(*key, score_epochs, seed)["id"]
    done = comparison.run(
        setup,
        baseline,
        select=lambda name, params: _select(settings, key, name, params, score_set),
        train=lambda name, params, plan, base, config: train_compared(
            info.id, config.model_dump(), name, params, plan, base
        ),
    )
    rows, paths = [r.to_dict() for r in done.rows], done.report
    where = f"MLflow run {done.parent_run_id} (experiment {info.dataset})"
    cells = reports.table(rows)
    rows_table(
        "comparison",
        cells,
        f"{info.ref}: {len(rows)} runs at equal compute; target 99% of the full run's best; {where}",
    )
    images(
        "comparison-report",
        paths,
        f"Accuracy vs compute, coverage, occupancy and speedups; {where}",
        note=f"Comparison of {', '.join(methods)} on {info.ref}; the nested runs are in {where}.",
    )
    print(reports.markdown(cells))
    return rows


if __name__ == "__main__":
    compare()
