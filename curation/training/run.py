"""``train_version``: the one training entry point the CLI and the Prefect flow share.

Everything a user can get wrong (version, architecture, plan, checkpoint) is checked before a run is
recorded; the catalog row and the MLflow run then start RUNNING and end FINISHED together with the
model, or FAILED.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from curation.catalog import Catalog
from curation.config import Settings
from curation.data.store import file_md5
from curation.data.versions import VersionInfo, open_version
from curation.errors import CurationError
from curation.faults import kill_point
from curation.locks import locked
from curation.metrics import efficiency
from curation.metrics.ledger import ComputeLedger
from curation.selection.plans import FullPlan, Plan, TablePlan
from curation.tracking import TrackedRun, Tracker
from curation.training import parallel, records
from curation.training.config import TrainConfig
from curation.training.data import TrainingData
from curation.training.selector import OnlineSelector
from curation.training.trainer import Callback, Trainer, amp_dtype, check_plan, resolve_device
from models import ModelSpec, build

RUNS_DIR = Path(".curation") / "runs"  # under the project home: one folder per catalog run
CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainOutcome:
    """What a finished run produced, as the CLI and the flow report it."""

    run_id: int
    mlflow_run_id: str
    model_version_id: int
    registered_model: str
    registry_version: str
    version: str
    config: dict
    summary: dict
    ledger: dict
    history: list
    checkpoint: str
    occupancy: list  # how many train rows were backpropagated 0, 1, 2, ... times
    data: dict  # where the splits lived (``TrainingData.placement``)

    def to_dict(self) -> dict:
        return asdict(self)


class _LogEpochs(Callback):
    def __init__(self, tracked: TrackedRun):
        self.tracked = tracked

    def on_epoch_end(self, record: dict) -> None:
        self.tracked.log_epoch(record)


def _class_names(manifest: dict) -> str:
    """The class names in label order, as one MLflow param (cut to MLflow's 6000 characters; all in classes.json)."""
    return json.dumps(manifest.get("class_names"))[:6000]


def run_dir(settings: Settings, run_id: int) -> Path:
    return settings.home / RUNS_DIR / str(run_id)


@contextmanager
def exclusive(directory: Path, what: str | None = None) -> Iterator[None]:
    """Hold ``directory``'s lock file: a second process cannot resume a run (or ``what``) still at work."""
    with locked(directory / "lock", what or f"training run {directory.name}", timeout=0):
        yield


def end_dead_runs(settings: Settings, catalog: Catalog) -> list[int]:
    """Mark FAILED every RUNNING run of this project whose process is gone (its run folder's lock is free);
    called whenever training starts, so no run stays RUNNING forever. ``--resume`` still continues them."""
    ended = []
    for run_id in records.running(catalog):
        folder = run_dir(settings, run_id)
        if not (folder / "lock").is_file():  # not started in this project folder
            continue
        try:
            with exclusive(folder):
                records.mark_failed(catalog, run_id)
        except CurationError:  # still at work
            continue
        ended.append(run_id)
    return ended


def load_plan(
    settings: Settings, catalog: Catalog, info: VersionInfo, plan: str | int | Path
) -> tuple[Plan, int | None, dict]:
    """A plan by catalog id (as `curation select` stores it) or a Parquet plan file; with its catalog id
    and selection ledger when the catalog knows it (a file is matched by its md5)."""
    if isinstance(plan, int) or str(plan).isdigit():
        from curation.selection.run import load_plan as stored_plan

        loaded = stored_plan(settings, int(plan))
        return loaded, int(plan), records.plan_ledger(catalog, int(plan))
    path = Path(plan)
    if not path.is_file():
        raise CurationError(f"plan file {path} does not exist", "give a Parquet plan file or a catalog plan id")
    row = records.plan_row(catalog, file_md5(path))
    if row is None:
        return TablePlan.read(path, info.id, method="file"), None, {}
    return TablePlan.read(path, row.version_id, method=row.method), row.id, row.ledger or {}


def train_version(
    settings: Settings,
    ref: str | int,
    config: TrainConfig | None = None,
    plan: Plan | str | int | Path | None = None,
    *,
    resume: bool = False,
    baseline: int | None = None,
    selector: OnlineSelector | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainOutcome:
    """Train on a data set version with a plan (default: every train sample, every epoch), tracked in MLflow.

    ``plan`` is a Plan, a catalog plan id or a Parquet plan file (see ``load_plan``).

    ``resume`` continues the newest interrupted run with the same settings from its last checkpoint;
    ``baseline`` (a finished run's catalog id) adds the target, compute-to-target and speedup to the summary.
    """
    info, reader = open_version(settings, ref)
    spec = ModelSpec.of(info)
    cfg = (config or TrainConfig()).resolve(info.feature_shape, images=reader.images)
    data = TrainingData.load(
        reader, info.id, info.feature_shape, resolve_device(cfg.device), cfg.workers, cfg.data_path
    )
    try:
        return _train(settings, info, spec, cfg, data, plan, resume, baseline, selector, callbacks)
    finally:
        data.close()


def _train(
    settings: Settings,
    info: VersionInfo,
    spec: ModelSpec,
    cfg: TrainConfig,
    data: TrainingData,
    plan: Plan | str | int | Path | None,
    resume: bool,
    baseline: int | None,
    selector: OnlineSelector | None,
    callbacks: Sequence[Callback],
) -> TrainOutcome:
    amp_dtype(cfg.amp, data.train.device)  # a bad --amp for this device is an error before anything is recorded
    catalog = Catalog(settings.catalog)
    plan_id, plan_ledger = None, {}
    if plan is None:
        plan = FullPlan(info.id, data.train.sample_ids)
    elif not isinstance(plan, Plan):
        plan, plan_id, plan_ledger = load_plan(settings, catalog, info, plan)
    digest = check_plan(plan, data, cfg.epochs, online=selector is not None)
    parallel.check(cfg, data.train.device)
    baseline_curve = records.run_curve(catalog, baseline) if baseline is not None else None
    torch.manual_seed(cfg.seed)
    model = build(cfg.arch, spec)
    params = {
        **cfg.model_dump(),
        "plan": {**plan.describe(), "digest": digest, "id": plan_id},
        "selector": None if selector is None else type(selector).__qualname__,
    }

    end_dead_runs(settings, catalog)
    previous = None
    if resume:
        previous = records.interrupted_run(
            catalog, info.id, cfg.arch, params, lambda rid: (run_dir(settings, rid) / CHECKPOINT).is_file()
        )
    run_id = previous.id if previous else records.start_run(catalog, info.id, plan_id, cfg.arch, params)
    tracker = Tracker(settings, experiment=info.dataset)
    with exclusive(run_dir(settings, run_id)):
        try:
            trainer = Trainer(
                model,
                data,
                cfg,
                selector=selector,
                checkpoint=run_dir(settings, run_id) / CHECKPOINT,
                callbacks=callbacks,
            )
            if previous:
                records.reopen(catalog, run_id)
                trainer.resume(plan)
            else:
                trainer.ledger.absorb_selection(ComputeLedger.from_dict(plan_ledger))
            return _tracked(
                settings,
                catalog,
                tracker,
                info,
                trainer,
                plan,
                params,
                run_id,
                previous.mlflow_run_id if previous else None,
                baseline,
                baseline_curve,
            )
        except BaseException:
            records.mark_failed(catalog, run_id)
            if previous and previous.mlflow_run_id:
                tracker.end_stale(previous.mlflow_run_id)
            raise


def _tracked(
    settings: Settings,
    catalog: Catalog,
    tracker: Tracker,
    info: VersionInfo,
    trainer: Trainer,
    plan: Plan,
    params: dict,
    run_id: int,
    mlflow_run_id: str | None,
    baseline: int | None,
    baseline_curve: efficiency.Curve | None,
) -> TrainOutcome:
    cfg = trainer.config
    with tracker.run(mlflow_run_id, name=f"{cfg.arch}-{plan.method}-{run_id}") as tracked:
        if mlflow_run_id is None:
            records.set_mlflow_run(catalog, run_id, tracked.run_id)
            tracked.log_params(
                {
                    **{k: v for k, v in params.items() if k != "plan"},
                    **{f"plan_{k}": v for k, v in params["plan"].items()},
                    "flops_per_sample": trainer.ledger.flops_per_sample,
                    "train_samples": len(trainer.data.train),
                    "class_names": _class_names(trainer.data.reader.manifest),
                }
            )
            plan_id = params["plan"]["id"]
            tracked.set_tags(
                {
                    "curation.run_id": run_id,
                    "curation.version_id": info.id,
                    "curation.version": info.ref,
                    "curation.plan_id": plan_id,
                    "curation.plan_method": plan.method,
                    "curation.baseline_run_id": baseline,
                    "curation.device": trainer.device.type,
                    **{f"curation.data.{k}": v for k, v in trainer.data.placement.items()},
                }
            )
            tracked.log_dataset(
                info.dataset,
                settings.home / info.path,
                info.content_hash,
                {"version_id": info.id, "rows": info.rows, "splits": info.splits},
            )
            manifest = trainer.data.reader.manifest  # what the model's outputs mean and what its inputs went through
            tracked.log_dict(
                {"class_names": manifest.get("class_names"), "transform": manifest.get("transform")}, "classes.json"
            )
        logged = tracked.logged_epochs()
        for record in trainer.history:  # epochs a killed run checkpointed but did not log
            if record["epoch"] not in logged:
                tracked.log_epoch(record)
        trainer.callbacks.append(_LogEpochs(tracked))
        result = trainer.fit(plan) if cfg.nproc == 1 else parallel.fit(trainer, plan, settings)

        curve = efficiency.Curve.from_history(result.history)
        summary = efficiency.summarize(curve, baseline_curve)
        tracked.log_summary(summary)
        tracked.log_dict(result.ledger.to_dict(), "ledger.json")
        curves = {f"run {run_id}": curve} | ({f"baseline run {baseline}": baseline_curve} if baseline_curve else {})
        tracked.log_figure(efficiency.plot(curves, summary.get("target_accuracy")), "accuracy_vs_compute.png")
        registered = f"{info.dataset}-{cfg.arch}"
        example = trainer.data.test.batch(np.arange(min(4, len(trainer.data.test))))[0].cpu().numpy()
        registry_version = tracked.log_model(copy.deepcopy(result.model).cpu().eval(), example, registered)
        kill_point("train:before-finish")
        checkpoint = result.checkpoint
        model_version_id = records.finish_run(
            catalog,
            run_id,
            result.ledger.to_dict(),
            {"history": result.history, "summary": summary},
            {
                "name": registered,
                "path": str(checkpoint.relative_to(settings.home)),
                "content_hash": file_md5(checkpoint),
                "metrics": summary,
                "registry_version": registry_version,
            },
        )
        tracked.set_tags({"curation.model_version_id": model_version_id})
    return TrainOutcome(
        run_id,
        tracked.run_id,
        model_version_id,
        registered,
        registry_version,
        info.ref,
        cfg.model_dump(),
        summary,
        result.ledger.to_dict(),
        result.history,
        str(checkpoint),
        result.occupancy,
        trainer.data.placement,
    )
