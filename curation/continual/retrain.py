"""``retrain``: the continuous-training lineage the CLI and the retrain flow share.

One call, under the lineage's lock:

1. Finish what a crashed call left: its RUNNING run becomes FAILED; the catalog's champion gets its
   MLflow ``champion`` alias and its sparse update when either is missing.
2. The data set's chunks that no FINISHED run of this lineage consumed are the new ones (a run's
   params list the chunk versions it consumed); none: nothing to do.
3. Triggers decide (amount, time, KS drift, champion accuracy drop; a periodic lineage waits for
   ``every`` chunks); each decision is logged with its reason. No fire: the chunks wait.
4. ``train_step`` from the champion (or from scratch), a proactive step for as many passes as its policy
   decides (``policy.decide``: fixed or drift-reactive, its bank summed from the finished runs' ``spend``
   params, so a killed call changes nothing); the model is registered in MLflow with its
   parent, then the FINISHED run and the ModelVersion (parent = the champion; promoted when at
   least as accurate as the champion on the newest test chunk) commit in one transaction.
   ``ship="batch"`` (proactive lineages' default) is sparse training: the step starts from the
   deployed replica's weights, a top-k update is made after every batch and the model set to what
   the replica would then hold; the updates are staged in the run's folder and the residual is kept
   in the checkpoint. ``ship="model"``: the step trains densely and step 5 makes one update.
5. A promoted model gets the alias and is shipped to the replica: its staged updates, or one sparse
   update of trained - deployed (``<data_dir>/sparse_updates/<lineage>/``); a ShippedUpdate row per update
   with bytes, dense bytes and gap, all in one transaction.

A crash before step 5's transaction leaves the champion untouched and the chunks unconsumed; after
it, step 1 of the next call completes the work.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch
from sqlalchemy import select

from curation.catalog import Catalog, ModelVersion, ShippedUpdate, TrainingRun
from curation.catalog.listing import lineage_of
from curation.choices import Ship
from curation.config import Settings
from curation.continual import policy, triggers
from curation.continual.data import StreamData, load_chunk
from curation.continual.proactive import ContinualConfig, evaluate, train_step
from curation.data.contract import check_name
from curation.data.store import file_md5
from curation.data.stream import chunks
from curation.data.versions import VersionInfo
from curation.errors import CurationError
from curation.faults import kill_point
from curation.files import write_atomic
from curation.sparse_updates import Replica, SparseTraining, SparseUpdate, Sparsifier, dense_bytes
from curation.tracking import Tracker
from curation.training import records
from curation.training.checkpoint import load_checkpoint, save_checkpoint
from curation.training.config import TrainConfig
from curation.training.run import exclusive, run_dir
from curation.training.trainer import resolve_device
from models import ModelSpec, build

log = logging.getLogger("curation.retrain")

ALIAS = "champion"
LOCKS = Path(".curation") / "retrain"
MODEL_FILE = "model.pt"


@dataclass
class RetrainOutcome:
    """What one call did, as the CLI and the flow report it."""

    lineage: str
    dataset: str
    status: str  # up-to-date | waiting (no trigger fired) | trained
    new_versions: list[int]
    decisions: list[dict] = field(default_factory=list)
    run_id: int | None = None
    model_version_id: int | None = None
    parent_model_version_id: int | None = None
    accuracy: float | None = None  # the new model on the newest test chunk
    champion_accuracy: float | None = None  # the previous champion, same test chunk
    promoted: bool = False
    champion_model_version_id: int | None = None
    registry_version: str | None = None
    shipped: dict | None = None
    ledger: dict | None = None
    spend: dict | None = None  # a proactive step's passes: its policy's decision (policy.Spend.record)

    def to_dict(self) -> dict:
        return asdict(self)


class _Lineage:
    """The catalog's view of one lineage: its runs, consumed chunks, champion and the replica's base."""

    def __init__(self, catalog: Catalog, dataset: str, name: str, infos: list[VersionInfo]):
        ids = [i.id for i in infos]
        with catalog.session() as s:
            runs = [
                r
                for r in s.scalars(select(TrainingRun).where(TrainingRun.version_id.in_(ids)).order_by(TrainingRun.id))
                if lineage_of(r.params) == name and r.params.get("dataset") == dataset
            ]
            finished = [r.id for r in runs if r.status == records.FINISHED]
            models = (
                list(s.scalars(select(ModelVersion).where(ModelVersion.run_id.in_(finished)).order_by(ModelVersion.id)))
                if finished
                else []
            )
        self.runs = runs
        self.consumed = {v for r in runs if r.status == records.FINISHED for v in r.params["chunks"]}
        promoted = [m for m in models if m.metrics.get("promoted")]
        self.champion: ModelVersion | None = promoted[-1] if promoted else None
        self.base: ModelVersion | None = promoted[0] if promoted else None
        self.last_trained = max((r.ended_at for r in runs if r.status == records.FINISHED), default=None)
        self.architecture = next((r.architecture for r in runs if r.status == records.FINISHED), None)
        self.ship = next((r.params.get("ship", "model") for r in runs if r.status == records.FINISHED), None)


def retrain(
    settings: Settings,
    dataset: str,
    lineage: str | None = None,
    config: ContinualConfig | None = None,
    train: TrainConfig | None = None,
    rho: float = 1e-3,
    ship: str | None = None,
) -> RetrainOutcome:
    """Bring lineage ``lineage`` (default: the mode's name) up to date with data set ``dataset``.

    ``ship``: "batch" (sparse training, a sparse update per training batch; the default of proactive
    lineages) or "model" (one sparse update per promoted model; the default of full and periodic)."""
    config = config or ContinualConfig()
    name = lineage or config.mode
    check_name(name)
    if not 0 < rho <= 1:
        raise CurationError(f"rho {rho} is outside (0, 1]", "give a fraction like 1e-3")
    if ship is not None and ship not in set(Ship):
        raise CurationError(f"unknown shipping {ship!r}", "use --ship batch or --ship model")
    if ship == "batch" and config.mode != "proactive":
        raise CurationError(
            f"--ship batch trains the deployed model sparsely, and {config.mode} retraining starts from scratch",
            "use --ship model, or --mode proactive",
        )
    infos = chunks(settings, dataset)
    if not infos:
        raise CurationError(f"data set {dataset!r} has no versions", "add a chunk with `curation data add` first")
    train = (train or TrainConfig()).resolve(infos[-1].feature_shape)
    config = config.resolve(train.batch_size)
    device = resolve_device(train.device)
    catalog, tracker = Catalog(settings.catalog), Tracker(settings, experiment=dataset)
    with exclusive(settings.home / LOCKS / f"{dataset}.{name}", f"retrain lineage {name!r} of {dataset!r}"):
        state = _Lineage(catalog, dataset, name, infos)
        tracker.end_dead_runs()
        if state.architecture not in (None, train.arch):
            raise CurationError(
                f"lineage {name!r} trains {state.architecture}, not {train.arch}",
                f"use --arch {state.architecture}, or start a new --lineage",
            )
        if ship and state.ship not in (None, ship):
            raise CurationError(
                f"lineage {name!r} ships per {state.ship}, not per {ship}",
                f"use --ship {state.ship}, or start a new --lineage",
            )
        ship = ship or state.ship or ("batch" if config.mode == "proactive" else "model")
        for run in state.runs:  # a crashed call of this lineage (we hold its lock)
            if run.status == records.RUNNING:
                records.mark_failed(catalog, run.id)
                if run.mlflow_run_id:
                    tracker.end_stale(run.mlflow_run_id)
        new = [i for i in infos if i.id not in state.consumed]
        outcome = RetrainOutcome(name, dataset, "up-to-date", [i.id for i in new])
        order = [i for i in infos if i.id in state.consumed] + new  # history first, then the new chunks
        stream = StreamData.of([load_chunk(settings, i, device) for i in (order if new else order[-1:])])
        spec = ModelSpec.of(infos[-1])
        replica = _replica(settings, catalog, state.base) if state.base else None  # verifies the shipped chain
        outcome.shipped = _publish(settings, catalog, tracker, name, state, replica, rho, stream, train, spec)
        outcome.champion_model_version_id = state.champion.id if state.champion else None
        if not new:
            log.info("lineage %s: no new versions of %s since the last run", name, dataset)
            return outcome
        checkpoint = load_checkpoint(settings.home / state.champion.path) if state.champion else {}
        champion = _model(train.arch, spec, checkpoint["model"]) if state.champion else None
        drift = spend = None
        if champion is not None:
            outcome.champion_accuracy = evaluate(champion, stream, train)
            step = len(stream.chunk_rows) - 1
            if config.mode == "proactive":  # its passes, from what the lineage's finished steps recorded
                spend = policy.decide(
                    config,
                    champion,
                    stream,
                    len(new),
                    [r.params.get("spend") for r in state.runs if r.status == records.FINISHED],
                    seed=step,
                )
                outcome.spend = spend.record()
                drift = triggers.Decision(**spend.signals[0])
            else:
                drift = policy.signals(champion, stream, len(new), config, None, seed=step)[0][0]
        decisions = _decide(config, state, stream, len(new), drift, outcome.champion_accuracy)
        outcome.decisions = [asdict(d) for d in decisions]
        for d in decisions:
            log.info("lineage %s: trigger %s %s: %s", name, d.trigger, "fired" if d.fire else "quiet", d.reason)
        if not any(d.fire for d in decisions):
            outcome.status = "waiting"
            return outcome
        sparse = _SparseTraining.of(replica, champion, checkpoint.get("residual", {}), rho) if ship == "batch" else None
        _train(
            settings,
            catalog,
            tracker,
            name,
            dataset,
            state,
            stream,
            new,
            champion,
            checkpoint.get("optimizer"),
            config,
            train,
            spec,
            rho,
            ship,
            sparse,
            spend,
            outcome,
        )
        state = _Lineage(catalog, dataset, name, infos)
        outcome.champion_model_version_id = state.champion.id
        kill_point("retrain:before-publish")
        shipped = _publish(settings, catalog, tracker, name, state, replica, rho, stream, train, spec)
        outcome.shipped = shipped or outcome.shipped  # or what step 1 shipped
        return outcome


def _decide(
    config: ContinualConfig,
    state: _Lineage,
    stream: StreamData,
    new: int,
    drift: triggers.Decision | None,
    champion_accuracy: float | None,
) -> list[triggers.Decision]:
    """Every trigger's decision on the new chunks (any one firing trains): amount, time, the KS ``drift``
    (policy.signals) and the champion's accuracy drop on the newest test chunk."""
    if state.champion is None:
        return [triggers.Decision(True, "first", "no champion yet: train the first model")]
    if config.mode == "periodic":
        due = config.due(new)
        return [triggers.Decision(due, "schedule", f"{new} new chunks {'>=' if due else '<'} every {config.every}")]
    last = state.last_trained if state.last_trained.tzinfo else state.last_trained.replace(tzinfo=UTC)
    return [
        triggers.amount(sum(len(rows) for rows in stream.chunk_rows[-new:]), config.min_samples),
        triggers.elapsed((datetime.now(UTC) - last).total_seconds(), config.every_s),
        drift,
        triggers.accuracy_drop(
            state.champion.metrics["accuracy"], champion_accuracy, len(stream.data.test), config.max_drop
        ),
    ]


def _train(
    settings: Settings,
    catalog: Catalog,
    tracker: Tracker,
    name: str,
    dataset: str,
    state: _Lineage,
    stream: StreamData,
    new: list[VersionInfo],
    champion: torch.nn.Module | None,
    optimizer: dict | None,
    config: ContinualConfig,
    train: TrainConfig,
    spec: ModelSpec,
    rho: float,
    ship: str,
    sparse: _SparseTraining | None,
    spend: policy.Spend | None,
    outcome: RetrainOutcome,
) -> None:
    """One tracked training step; the run and its model commit together (see the module docstring)."""
    parent = state.champion.id if state.champion else None
    params = {
        "lineage": name,
        "dataset": dataset,
        "chunks": [i.id for i in new],
        "history": sorted(state.consumed),
        "parent_model_version_id": parent,
        "continual": config.model_dump(),
        "train": train.model_dump(),
        "rho": rho,
        "ship": ship,
        "decisions": outcome.decisions,
        "spend": outcome.spend,
    }
    run_id = records.start_run(catalog, new[-1].id, None, train.arch, params)
    registered = f"{dataset}-{name}"
    try:
        with tracker.run(name=f"retrain-{name}-{run_id}") as tracked:
            records.set_mlflow_run(catalog, run_id, tracked.run_id)
            tracked.log_params(
                {
                    **config.model_dump(),
                    **train.model_dump(),
                    "lineage": name,
                    "rho": rho,
                    "ship": ship,
                    "chunks": ",".join(str(i.id) for i in new),
                    "parent_model_version_id": parent,
                    "passes_spent": spend.passes if spend else None,
                    "pass_bank": spend.bank if spend else None,
                    "drifted": spend.drifted if spend else None,
                }
            )
            tracked.set_tags(
                {
                    "curation.run_id": run_id,
                    "curation.stages": name,
                    "curation.version_id": new[-1].id,
                    "curation.parent_model_version_id": parent,
                }
            )
            if sparse:
                sparse.model_version = f"run-{run_id}"
            step = train_step(
                stream,
                len(new),
                champion,
                config,
                train,
                spec,
                step=len(stream.chunk_rows) - 1,
                optimizer=optimizer,
                callbacks=[sparse] if sparse else [],
                passes=spend.passes if spend else None,
            )
            promoted = outcome.champion_accuracy is None or step.accuracy >= outcome.champion_accuracy
            summary = {
                "accuracy": step.accuracy,
                "champion_accuracy": outcome.champion_accuracy,
                "from_scratch": float(step.from_scratch),
                "promoted": float(promoted),
                "train_seconds": step.ledger.train_seconds,
                "backward_samples": step.ledger.backward_samples,
                "total_flops": step.ledger.total_flops,
            }
            tracked.log_summary(summary)
            path = run_dir(settings, run_id) / MODEL_FILE
            save_checkpoint(
                path,
                {
                    "arch": train.arch,
                    "feature_shape": list(stream.data.feature_shape),
                    "model": step.model.state_dict(),
                    "optimizer": step.optimizer,
                    **(sparse.stage(settings, path.parent) if sparse else {}),
                },
            )
            example = stream.data.test.features[:4].cpu().numpy()
            model = _model(train.arch, spec, step.model.state_dict())  # a CPU copy for the registry
            registry_version = tracked.log_model(
                model.eval(),
                example,
                registered,
                tags={
                    "curation.stages": name,
                    "curation.parent_model_version_id": parent,
                    "curation.parent_registry_version": state.champion.registry_version if state.champion else None,
                    "curation.chunks": ",".join(str(i.id) for i in new),
                },
            )
            kill_point("retrain:before-finish")
            model_version_id = records.finish_run(
                catalog,
                run_id,
                step.ledger.to_dict(),
                {"summary": summary},
                {
                    "name": registered,
                    "path": str(path.relative_to(settings.home)),
                    "content_hash": file_md5(path),
                    "metrics": {
                        "accuracy": step.accuracy,
                        "champion_accuracy": outcome.champion_accuracy,
                        "promoted": promoted,
                        "test_version_id": stream.data.version_id,
                    },
                    "registry_version": registry_version,
                    "parent_id": parent,
                },
            )
            tracked.set_tags({"curation.model_version_id": model_version_id})
    except BaseException:
        records.mark_failed(catalog, run_id)
        raise
    log.info(
        "lineage %s: model %d (parent %s) accuracy %.4f vs champion %s: %s",
        name,
        model_version_id,
        parent,
        step.accuracy,
        outcome.champion_accuracy,
        "promoted" if promoted else "kept the champion",
    )
    outcome.status, outcome.run_id, outcome.model_version_id = "trained", run_id, model_version_id
    outcome.parent_model_version_id, outcome.accuracy, outcome.promoted = parent, step.accuracy, promoted
    outcome.registry_version, outcome.ledger = registry_version, step.ledger.to_dict()


def _state(settings: Settings, model: ModelVersion) -> dict[str, torch.Tensor]:
    return load_checkpoint(settings.home / model.path)["model"]


def _model(arch: str, spec: ModelSpec, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    net = build(arch, spec)
    net.load_state_dict(state)
    return net


def _replica(settings: Settings, catalog: Catalog, base: ModelVersion) -> Replica:
    """The deployed replica: the base model plus every shipped update of its lineage, in sequence; a stored
    update that does not fit the lineage is a one-line error."""
    replica = Replica(_state(settings, base), str(base.id))
    with catalog.session() as s:
        shipped = list(
            s.scalars(
                select(ShippedUpdate)
                .where(ShippedUpdate.base_model_version_id == base.id)
                .order_by(ShippedUpdate.sequence)
            )
        )
    for row in shipped:
        replica.apply(SparseUpdate.from_bytes((settings.home / row.path).read_bytes()))
    return replica


def deployed_replica(settings: Settings, dataset: str, lineage: str = "proactive") -> Replica:
    """What the serving side holds for a lineage: its first champion plus the sparse updates shipped since."""
    state = _Lineage(Catalog(settings.catalog), dataset, lineage, chunks(settings, dataset))
    if state.base is None:
        raise CurationError(
            f"lineage {lineage!r} of {dataset!r} has deployed nothing yet",
            f"run `curation retrain {dataset} --lineage {lineage}` first",
        )
    return _replica(settings, Catalog(settings.catalog), state.base)


def lineage_status(settings: Settings, dataset: str, lineage: str = "proactive") -> dict:
    """What ``curation retrain --status`` shows: the champion, the consumed and waiting chunks, the replica's
    last shipped update; from the catalog alone (nothing is loaded or trained)."""
    infos = chunks(settings, dataset)
    if not infos:
        raise CurationError(f"data set {dataset!r} has no versions", "add a chunk with `curation data add` first")
    catalog = Catalog(settings.catalog)
    state = _Lineage(catalog, dataset, lineage, infos)
    champion = state.champion
    last = None
    if state.base is not None:
        with catalog.session() as s:
            row = s.scalars(
                select(ShippedUpdate)
                .where(ShippedUpdate.base_model_version_id == state.base.id)
                .order_by(ShippedUpdate.sequence.desc())
                .limit(1)
            ).first()
        if row is not None:
            last = {
                "sequence": row.sequence,
                "model_version_id": row.model_version_id,
                "rho": row.rho,
                "bytes": row.bytes,
                "dense_bytes": row.dense_bytes,
                "gap": row.gap,
                "created_at": row.created_at.isoformat(),
            }
    finished = [r for r in state.runs if r.status == records.FINISHED]
    return {
        "dataset": dataset,
        "lineage": lineage,
        "runs": len(finished),
        "failed_runs": sum(r.status == records.FAILED for r in state.runs),
        "policy": finished[-1].params.get("continual", {}).get("policy", "fixed") if finished else None,
        "champion": None
        if champion is None
        else {
            "model_version_id": champion.id,
            "name": champion.name,
            "registry_version": champion.registry_version,
            "accuracy": champion.metrics.get("accuracy"),
            "test_version_id": champion.metrics.get("test_version_id"),
            "parent_id": champion.parent_id,
        },
        "base_model_version_id": state.base.id if state.base else None,
        "consumed": [i.id for i in infos if i.id in state.consumed],
        "waiting": [i.id for i in infos if i.id not in state.consumed],
        "last_update": last,
    }


def _publish(
    settings: Settings,
    catalog: Catalog,
    tracker: Tracker,
    name: str,
    state: _Lineage,
    replica: Replica | None,
    rho: float,
    stream: StreamData,
    train: TrainConfig,
    spec: ModelSpec,
) -> dict | None:
    """Give the champion its alias and ship it to ``replica`` (which advances), unless done; the shipped updates'
    report."""
    champion, base = state.champion, state.base
    if champion is None:
        return None
    if tracker.alias(champion.name, ALIAS) != champion.registry_version:
        kill_point("retrain:before-alias")
        tracker.set_alias(champion.name, ALIAS, champion.registry_version)
        kill_point("retrain:after-alias")
        log.info("lineage %s: alias %s -> %s v%s", name, ALIAS, champion.name, champion.registry_version)
    if champion.id == base.id:
        return None  # the first champion is the replica's base, deployed in full
    with catalog.session() as s:
        if s.scalar(select(ShippedUpdate.id).where(ShippedUpdate.model_version_id == champion.id).limit(1)) is not None:
            return None  # shipped
    checkpoint = load_checkpoint(settings.home / champion.path)
    trained, staged = checkpoint["model"], checkpoint.get("updates")
    if staged is None:  # ship="model": one update, the top-k of trained - deployed
        sender = Sparsifier.following(replica, rho)
        update = sender.update(trained, str(champion.id))
        path = _write(
            settings.data_path / "sparse_updates" / name / f"{base.id}-{update.sequence:06d}.csu", update.to_bytes()
        )
        staged = [{"path": str(path.relative_to(settings.home)), "gap": sender.gap(trained)}]
    if not staged:
        return None  # a step without batches changed nothing
    kill_point("retrain:before-ship-commit")
    dense, rows = dense_bytes(trained), []
    for entry in staged:
        payload = (settings.home / entry["path"]).read_bytes()
        update = SparseUpdate.from_bytes(payload)
        replica.apply(update)  # the lineage and the sequence are checked before anything is recorded
        rows.append(
            ShippedUpdate(
                model_version_id=champion.id,
                base_model_version_id=base.id,
                sequence=update.sequence,
                rho=update.rho,
                path=entry["path"],
                bytes=len(payload),
                dense_bytes=dense,
                gap=entry["gap"],
            )
        )
    with catalog.session() as s:
        s.add_all(rows)
    model = _model(train.arch, spec, trained)
    trained_accuracy = evaluate(model, stream, train)
    model.load_state_dict(replica.state)
    deployed_accuracy = evaluate(model, stream, train)
    sent = sum(r.bytes for r in rows)
    report = {
        "first_sequence": rows[0].sequence,
        "sequence": rows[-1].sequence,
        "updates": len(rows),
        "model_version_id": champion.id,
        "base_model_version_id": base.id,
        "rho": rows[-1].rho,
        "bytes": sent,
        "dense_bytes": dense,
        "bytes_ratio": sent / len(rows) / dense,
        "gap": rows[-1].gap,
        "path": str(settings.home / rows[-1].path),
        "trained_accuracy": trained_accuracy,
        "deployed_accuracy": deployed_accuracy,
        "accuracy_gap": trained_accuracy - deployed_accuracy,
    }
    log.info(
        "lineage %s: shipped updates %d-%d (%d bytes, %.4f%% of dense per update), trained %.4f vs deployed %.4f",
        name,
        rows[0].sequence,
        rows[-1].sequence,
        sent,
        100 * report["bytes_ratio"],
        trained_accuracy,
        deployed_accuracy,
    )
    return report


def _write(path: Path, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` atomically and durably: a shipped update cannot be made again."""
    return write_atomic(path, lambda tmp: tmp.write_bytes(payload))


class _SparseTraining(SparseTraining):
    """``ship="batch"``: sparse training from the deployed replica. The model is set to the replica's
    weights; what the champion's training left unshipped (its weights minus the replica's, plus the
    residual in its checkpoint) is the sender's residual. The updates wait in memory until ``stage``;
    their header names the run (``run-<id>``): the model version does not exist yet."""

    def __init__(self, sender: Sparsifier):
        super().__init__(sender, self._keep, "")
        self.updates: list[tuple[int, bytes, float]] = []  # sequence, payload, gap after it

    @classmethod
    def of(
        cls, replica: Replica | None, model: torch.nn.Module | None, carried: dict[str, torch.Tensor], rho: float
    ) -> _SparseTraining | None:
        """Sparse training of the champion ``model`` with its checkpoint's residual ``carried``; None without a
        champion: the first model trains from scratch and is deployed in full."""
        if model is None:
            return None
        sender = Sparsifier(rho, replica.base_version, carry=True).start(replica.state, replica.sequence)
        sender.residual = {
            k: v.detach().cpu().float().reshape(-1) - replica.state[k].float().reshape(-1) + carried.get(k, 0)
            for k, v in model.state_dict().items()
            if v.is_floating_point()
        }
        model.load_state_dict(replica.state)
        return cls(sender)

    def _keep(self, update: SparseUpdate) -> None:
        self.updates.append((update.sequence, update.to_bytes(), self.sender.gap(self.sender.mirror)))

    def stage(self, settings: Settings, folder: Path) -> dict:
        """Write the updates into ``folder``/updates; the checkpoint entries that point to them and the residual."""
        staged = [
            {
                "path": str(_write(folder / "updates" / f"{sequence:06d}.csu", payload).relative_to(settings.home)),
                "gap": gap,
            }
            for sequence, payload, gap in self.updates
        ]
        return {"updates": staged, "residual": {k: v.cpu() for k, v in self.sender.residual.items()}}
