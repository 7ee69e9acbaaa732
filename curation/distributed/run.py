"""Distributed selection of a catalog version: the plan written, registered and tracked like any other.

``select_distributed(settings, version, params, score_set)`` runs ``selection.select`` on the version's
train split (embeddings from the score set, or ``source=features``; utility ``density`` or a score
of the score set) on a LocalCluster, an existing scheduler (``scheduler=tcp://host:port``) or a given
client. The plan's parts land in ``<data_dir>/plans/<folder md5>/``; its catalog row (method
``pairwise-distributed``) and its MLflow run (per-pass and per-round figures, peak memory per worker)
are written in one catalog transaction, last: a failure anywhere leaves nothing registered and no
plan folder behind.
"""

from __future__ import annotations

import importlib
import shutil
import time
from contextlib import nullcontext
from typing import TYPE_CHECKING

from curation.catalog import Catalog, ScoreSet, SelectionPlan
from curation.config import Settings
from curation.data.store import folder_md5
from curation.distributed.source import Source
from curation.errors import CurationError
from curation.faults import kill_point
from curation.files import move_into_place, temporary_path
from curation.metrics.ledger import ComputeLedger
from curation.selection.pairwise import DENSITY
from curation.selection.run import PlanInfo, plan_info

if TYPE_CHECKING:
    from curation.distributed.selection import Selection

METHOD = "pairwise-distributed"


def dask_modules(*names: str) -> list:
    """The named modules of this package (they import Dask), or a one-line error when the dask extra is missing."""
    try:
        return [importlib.import_module(f"curation.distributed.{name}") for name in names]
    except ImportError:
        raise CurationError(
            "--engine dask needs dask[distributed] and prefect-dask",
            "install the dask extra: pip install 'curation[dask]'",
        ) from None


def _sources(settings: Settings, version, params, score_set_id: int | None):
    """(embeddings, utility or None) as partitioned Parquet sources over the version's train split."""
    score_path = None
    if score_set_id is not None:
        with Catalog(settings.catalog).session() as s:
            row = s.get(ScoreSet, score_set_id)
            if row is None:
                raise CurationError(
                    f"no score set {score_set_id} in the catalog", "list them with `curation scores ls`"
                )
            if row.version_id != version.id:
                raise CurationError(
                    f"score set {score_set_id} belongs to version {row.version_id}, not {version.id}",
                    "score this version first",
                )
            score_path = settings.home / row.path
    needs = [
        what
        for what, used in (
            ("embeddings", params.source == "embeddings"),
            (f"score {params.utility!r}", params.utility != DENSITY),
        )
        if used
    ]
    if needs and score_path is None:
        raise CurationError(
            f"{METHOD} needs a score set for its {' and '.join(needs)}",
            "pass --score-set, or -p source=features -p utility=density",
        )
    embeddings = (
        Source.of(settings.home / version.path, "features")
        if params.source == "features"
        else Source.of(score_path, "embedding")
    )
    return embeddings, None if params.utility == DENSITY else Source.of(score_path, params.utility)


def select_distributed(
    settings: Settings,
    ref: str | int,
    params: dict | None = None,
    score_set_id: int | None = None,
    scheduler: str | None = None,
    client=None,
    report=None,
) -> tuple[PlanInfo, Selection]:
    """Select on Dask and record the plan; returns it and the run's ``selection.Selection``."""
    cluster, engine = dask_modules("cluster", "selection")
    chosen = engine.Params.of(params)
    version = Catalog(settings.catalog).version(ref)
    embeddings, utility = _sources(settings, version, chosen, score_set_id)
    folder = settings.data_path / "plans"
    tmp = temporary_path(folder, "plan")
    made = None  # a plan folder this call moved into place: removed again unless the plan is registered
    try:
        start = time.perf_counter()
        with nullcontext(client) if client is not None else cluster.open_client(scheduler) as active:
            selection = engine.select(
                active, embeddings, utility, chosen, settings.data_path / ".distributed", tmp, report
            )
        seconds = time.perf_counter() - start
        content_hash = folder_md5({name: md5 for name, md5, _ in selection.parts})
        target = folder / content_hash.removesuffix(".dir")
        if not target.exists():  # else the same subset was selected before: the same bytes are there
            move_into_place(tmp, target)
            made = target
        kill_point("select:after-write")
        ledger = ComputeLedger()
        ledger.book_selection(seconds=seconds)
        row = SelectionPlan(
            version_id=version.id,
            score_set_id=score_set_id,
            method=METHOD,
            params=chosen.to_dict(),
            budget=selection.k,
            ratio=selection.k / selection.n,
            seed=chosen.seed,
            path=str(target.relative_to(settings.home)),
            content_hash=content_hash,
            ledger=ledger.to_dict(),
        )
        with Catalog(settings.catalog).session() as s:
            s.add(row)
            s.flush()
            _track(settings, version.dataset.name, row.id, chosen, selection, seconds)
            kill_point("select:before-commit")
        made = None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
    return plan_info(row), selection


def _track(settings: Settings, experiment: str, plan_id: int, params, selection, seconds: float) -> None:
    """The run's figures in MLflow: per bounding pass and greedy round (step = its number), and totals."""
    from curation.tracking import Tracker

    with Tracker(settings, experiment).run(name=f"select {METHOD} (plan {plan_id})") as run:
        run.set_tags({"curation.plan_id": plan_id, "curation.method": METHOD})
        run.log_params(params.to_dict())
        for record in selection.bounding:
            run.log_step(
                {
                    "bounding_selected": record["selected"],
                    "bounding_discarded": record["discarded"],
                    "bounding_open_slots": record["open_slots"],
                },
                record["pass"],
            )
        for record in selection.rounds:
            run.log_step(
                {
                    "round_candidates": record["candidates"],
                    "round_partitions": record["partitions"],
                    "round_largest_partition": record["largest_partition"],
                    "round_kept": record["kept"],
                },
                record["round"],
            )
        peaks = selection.worker_peak_mb
        run.log_summary(
            {
                "objective": selection.objective,
                "n": selection.n,
                "budget": selection.k,
                "decided_by_bounding": selection.decided_by_bounding,
                "bounded_selected": selection.bounded_selected,
                "bounded_discarded": selection.bounded_discarded,
                "bounding_passes": len(selection.bounding),
                "rounds": len(selection.rounds),
                "selection_seconds": seconds,
                "tasks_rerun": sum(selection.reruns.values()),
                "knn_recall": selection.recall,
                "peak_rss_mb_max_worker": max(peaks.values(), default=None),
                **{f"{phase}_seconds": s for phase, s in selection.seconds.items()},
                **{f"{phase}_cpu_seconds": s for phase, s in selection.cpu_seconds.items()},
                **{f"{phase}_peak_rss_mb": mb for phase, mb in selection.peak_mb.items()},
                **{f"peak_rss_mb_worker_{i}": mb for i, mb in enumerate(peaks.values())},
            }
        )
        run.log_dict(
            {
                "bounding": selection.bounding,
                "rounds": selection.rounds,
                "reruns": selection.reruns,
                "worker_peak_mb": peaks,
                "seconds": selection.seconds,
                "cpu_seconds": selection.cpu_seconds,
                "peak_mb": selection.peak_mb,
                "sigma": selection.sigma,
                "exact_knn": selection.exact,
                "nprobe": selection.nprobe,
                "knn_recall": selection.recall,
                "cells": selection.nlist,
                "edges": selection.edges,
                "partitions": selection.partitions,
            },
            "distributed_selection.json",
        )
