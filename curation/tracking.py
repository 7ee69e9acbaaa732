"""MLflow behind one module: the only place in the tool that imports mlflow.

A ``Tracker`` opens one run context in the project's store (``Settings.tracking``: a SQLite file
by default, artifacts under ``<home>/mlflow/artifacts``); the ``TrackedRun`` it yields logs params,
per-epoch metrics (step = epoch), the data set (digest = the catalog's content hash), tags, plots,
and the model, registered under a name. ``Tracker.parent`` opens a parent run (e.g. a comparison):
every run started inside its block, in this thread or a task copying its context, is nested under
it. The rest of the code never sees MLflow.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from curation.catalog import redact
from curation.config import Settings
from curation.errors import CurationError
from curation.faults import kill_point

# A local tool that must work offline: no usage telemetry, synchronous logging, stdout kept for our output
# (a user may override).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # a server's run links would break --json

EPOCH_METRICS = (
    "accuracy",
    "loss",
    "train_loss",
    "coverage",
    "forward_samples",
    "backward_samples",
    "selection_forward_samples",
    "flops",
    "seconds",
    "selection_seconds",
    "data_seconds",
)
OWNER_TAG = "curation.process"  # host:pid:start-time of the process that runs it (see end_dead_runs)


def _process_key(pid: int | None = None) -> str:
    """host:pid:start-time of a process: names it uniquely even after its pid is reused."""
    import psutil

    process = psutil.Process(pid)
    return f"{socket.gethostname()}:{process.pid}:{process.create_time():.3f}"


def _dead(owner: str | None) -> bool:
    """Whether the process that owns a run (its OWNER_TAG) is known to be gone."""
    import psutil

    host, _, rest = (owner or "").partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's run, or one without an owner: cannot tell
    try:
        return _process_key(int(pid)) != owner
    except psutil.Error:
        return True


_PASSWORD = re.compile(r"(://[^:/@\s]+):[^@\s]+@")  # user:password@ in a URL MLflow quotes in its errors
_PARENT: ContextVar[str | None] = ContextVar("curation_parent_run", default=None)  # see Tracker.parent


def _mlflow():
    import mlflow

    return mlflow


class TrackedRun:
    """One active MLflow run; every method logs to it."""

    def __init__(self, run_id: str):
        self.run_id = run_id

    def set_tags(self, tags: Mapping[str, object]) -> None:
        _mlflow().set_tags({k: str(v) for k, v in tags.items() if v is not None})

    def log_params(self, params: Mapping[str, object]) -> None:
        _mlflow().log_params({k: "" if v is None else v for k, v in params.items()})

    def log_epoch(self, record: Mapping[str, float]) -> None:
        _mlflow().log_metrics(
            {k: float(record[k]) for k in EPOCH_METRICS if k in record}, step=int(record["epoch"]), synchronous=True
        )

    def logged_epochs(self) -> set[int]:
        """Epochs whose metrics are already in the run (a resumed run logs only the missing ones)."""
        history = _mlflow().MlflowClient().get_metric_history(self.run_id, "accuracy")
        return {m.step for m in history}

    def log_summary(self, summary: Mapping[str, float | None]) -> None:
        """Run-level metrics (no step); entries that are None (e.g. a target never reached) are skipped."""
        _mlflow().log_metrics({k: float(v) for k, v in summary.items() if v is not None}, synchronous=True)

    def log_step(self, record: Mapping[str, float], step: int) -> None:
        """Metrics of one step of a multi-step job (e.g. a selection round), ``step`` as their x axis."""
        _mlflow().log_metrics({k: float(v) for k, v in record.items()}, step=int(step), synchronous=True)

    def log_dataset(self, name: str, path: Path, digest: str, tags: Mapping[str, object]) -> None:
        """The version's Parquet file as the run's training input, with the catalog's content hash as digest."""
        mlflow = _mlflow()
        from mlflow.data.dataset_source_registry import get_registered_sources, resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset

        local = [s for s in get_registered_sources() if s.__name__ == "LocalArtifactDatasetSource"][:1]
        source = resolve_dataset_source(str(path), candidate_sources=local)
        mlflow.log_input(
            MetaDataset(source, name=name, digest=digest), context="training", tags={k: str(v) for k, v in tags.items()}
        )

    def log_dict(self, data: dict, name: str) -> None:
        _mlflow().log_dict(data, name)

    def log_figure(self, figure, name: str) -> None:
        _mlflow().log_figure(figure, name)

    def log_model(self, model, example, registered_name: str, tags: Mapping[str, object] | None = None) -> str:
        """Log the model (torch.export 'pt2' format: loads without pickle) and register it; the new version.

        ``tags`` go on the registered version (e.g. its lineage: the parent it continued from).
        """
        import mlflow.pytorch
        import torch

        info = mlflow.pytorch.log_model(
            model,
            name="model",
            registered_model_name=registered_name,
            input_example=example,
            serialization_format="pt2",
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )
        version = str(info.registered_model_version)
        client = _mlflow().MlflowClient()
        for key, value in (tags or {}).items():
            if value is not None:
                client.set_model_version_tag(registered_name, version, key, str(value))
        return version


class ParentRun:
    """A run that groups nested runs; logs through the client, so it never becomes the active run."""

    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id

    def log_params(self, params: Mapping[str, object]) -> None:
        for key, value in params.items():
            self.client.log_param(self.run_id, key, "" if value is None else value)

    def log_dict(self, data, name: str) -> None:
        self.client.log_dict(self.run_id, data, name)

    def log_files(self, paths: Mapping[str, Path], folder: str) -> None:
        """Files as artifacts under ``folder`` (e.g. the report's PNGs)."""
        for path in paths.values():
            self.client.log_artifact(self.run_id, str(path), folder)

    def children(self) -> list[str]:
        """The run names nested under this run, oldest first."""
        found = self.client.search_runs(
            [self.client.get_run(self.run_id).info.experiment_id],
            f"tags.mlflow.parentRunId = '{self.run_id}'",
            order_by=["attributes.start_time"],
        )
        return [r.info.run_name for r in found]


class Tracker:
    """The project's tracking store and one experiment in it."""

    def __init__(self, settings: Settings, experiment: str):
        self.uri = settings.tracking
        self.experiment = experiment
        self.local = self.uri.startswith("sqlite:///")
        # a tracking server keeps the artifacts where it was told (--artifacts-destination); a store this
        # process writes itself (SQLite, PostgreSQL) keeps them in the project, not in MLflow's ./mlruns
        self.server = self.uri.split("://", 1)[0] in ("http", "https", "databricks")
        self.artifacts = settings.home / "mlflow" / "artifacts"

    def _experiment_id(self) -> str:
        mlflow = _mlflow()
        from mlflow.exceptions import MlflowException

        client = mlflow.MlflowClient()
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        location = None if self.server else self.artifacts.as_uri()
        try:
            return client.create_experiment(self.experiment, artifact_location=location)
        except MlflowException:  # created meanwhile by another process
            found = client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return found.experiment_id

    def _ready(self) -> None:
        """The store's folder exists and MLflow points at it."""
        if self.local:
            Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        _mlflow().set_tracking_uri(self.uri)

    @contextmanager
    def run(self, run_id: str | None = None, name: str | None = None) -> Iterator[TrackedRun]:
        """Start a run (or reopen ``run_id``); it ends FINISHED, or FAILED/KILLED when the block raises."""
        mlflow = _mlflow()
        from mlflow.exceptions import MlflowException

        self._ready()
        try:
            self.end_dead_runs()
            owner = {OWNER_TAG: _process_key()}
            if run_id is None:
                active = mlflow.start_run(
                    experiment_id=self._experiment_id(), run_name=name, parent_run_id=_PARENT.get(), tags=owner
                )
            else:
                active = mlflow.start_run(run_id=run_id, tags=owner)
            kill_point("mlflow:after-start")
        except MlflowException as exc:
            first = _PASSWORD.sub(r"\1:***@", (str(exc).strip().splitlines() or [type(exc).__name__])[0])[:200]
            raise CurationError(
                f"cannot open an MLflow run at {redact(self.uri)}: {first}",
                "check CURATION_TRACKING_URI (default: sqlite:///<home>/mlflow/mlflow.db)",
            ) from None
        status = "FAILED"
        try:
            yield TrackedRun(active.info.run_id)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            kill_point("mlflow:before-end")
            mlflow.end_run(status)

    @contextmanager
    def parent(self, name: str, tags: Mapping[str, object] | None = None) -> Iterator[ParentRun]:
        """A parent run for the block: the runs started inside it are nested under it; it ends FINISHED,
        or FAILED/KILLED when the block raises."""
        mlflow = _mlflow()

        self._ready()
        client = mlflow.MlflowClient()
        run = client.create_run(
            self._experiment_id(),
            run_name=name,  # owned: end_dead_runs can end it
            tags={**{k: str(v) for k, v in (tags or {}).items() if v is not None}, OWNER_TAG: _process_key()},
        )
        token = _PARENT.set(run.info.run_id)
        status = "FAILED"
        try:
            yield ParentRun(client, run.info.run_id)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            _PARENT.reset(token)
            client.set_terminated(run.info.run_id, status)

    def end_stale(self, run_id: str, status: str = "FAILED") -> None:
        """Mark a run left RUNNING by a killed process as ended (e.g. when it cannot be resumed)."""
        mlflow = _mlflow()
        from mlflow.exceptions import MlflowException

        mlflow.set_tracking_uri(self.uri)
        client = mlflow.MlflowClient()
        try:
            if client.get_run(run_id).info.status == "RUNNING":
                client.set_terminated(run_id, status)
        except MlflowException:  # the run is gone from this store: nothing to end
            return

    def end_dead_runs(self) -> list[str]:
        """Mark FAILED every run left RUNNING by a process of this host that is gone (killed); called whenever
        a run starts, so no run stays RUNNING forever. Runs of live processes or other hosts are left alone."""
        if self.local and not Path(self.uri.removeprefix("sqlite:///")).is_file():
            return []  # no store yet: nothing ran
        mlflow = _mlflow()
        mlflow.set_tracking_uri(self.uri)
        client = mlflow.MlflowClient()
        ids = [e.experiment_id for e in client.search_experiments()]
        running = client.search_runs(ids, "attributes.status = 'RUNNING'", max_results=1000) if ids else []
        dead = [r.info.run_id for r in running if _dead(r.data.tags.get(OWNER_TAG))]
        for run_id in dead:
            client.set_terminated(run_id, "FAILED")
        return dead

    def set_alias(self, registered_name: str, alias: str, version: str) -> None:
        """Point ``alias`` (e.g. ``champion``) of a registered model at ``version`` (idempotent)."""
        mlflow = _mlflow()
        mlflow.set_tracking_uri(self.uri)
        mlflow.MlflowClient().set_registered_model_alias(registered_name, alias, version)

    def alias(self, registered_name: str, alias: str) -> str | None:
        """The version ``alias`` points at, or None when the model or the alias does not exist."""
        mlflow = _mlflow()
        from mlflow.exceptions import MlflowException

        mlflow.set_tracking_uri(self.uri)
        try:
            return str(mlflow.MlflowClient().get_model_version_by_alias(registered_name, alias).version)
        except MlflowException:
            return None
