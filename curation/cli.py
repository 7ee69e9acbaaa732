"""The `curation` command line (typer + rich). User errors: one line on stderr, exit code 2."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Optional

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from curation.config import load_settings
from curation.errors import CurationError

app = typer.Typer(help="Train on less data without losing accuracy: curate, train, prove it.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Data set versions: add, list, show.", no_args_is_help=True)
app.add_typer(data_app, name="data")

PIPED_WIDTH = 140  # rich would wrap tables at 80 columns when output goes to a file or a pipe
out = Console(width=None if sys.stdout.isatty() else PIPED_WIDTH)
err = Console(stderr=True, width=None if sys.stderr.isatty() else PIPED_WIDTH)


def fail(exc: CurationError) -> None:
    err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@contextmanager
def user_errors():
    """Turn a CurationError into one line and exit code 2; never a traceback."""
    try:
        yield
    except CurationError as exc:
        fail(exc)


@contextmanager
def steps(enabled: bool = True):
    """A rich progress display for multi-second steps (silent with --json or when not a terminal)."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err, transient=True, disable=not enabled) as progress:
        current = {}

        def step(description: str) -> None:
            if "task" in current:
                progress.update(current["task"], completed=1, total=1)
            current["task"] = progress.add_task(description, total=None)

        yield step


def emit_json(payload) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


@app.command()
def init(json_out: bool = typer.Option(False, "--json", help="Print a JSON summary.")):
    """Prepare this directory: git and DVC if missing, the catalog, the MLflow store."""
    from curation.catalog import redact
    from curation.project import init_project

    with user_errors():
        settings = load_settings()
        done = init_project(settings)
    summary = {"home": str(settings.home), "catalog": redact(settings.catalog),
               "tracking": redact(settings.tracking), "data": str(settings.data_path), "done": done}
    if json_out:
        emit_json(summary)
        return
    out.print(f"[green]ready[/] {settings.home} ({', '.join(done) or 'already initialised'})")
    out.print(f"  catalog  {summary['catalog']}\n  tracking {summary['tracking']}\n  data     {summary['data']}")


@data_app.command("add")
def data_add(
    source: str = typer.Argument(..., help="'mnist1d', 'digits', a .parquet/.csv file, or a folder of images "
                                           "with one subfolder per class."),
    name: Optional[str] = typer.Option(None, help="Data set name (default: the source's name)."),
    samples: Optional[int] = typer.Option(None, help="mnist1d: number of samples (default 5000, the published set)."),
    seed: Optional[int] = typer.Option(None, help="mnist1d/digits: generator or split seed."),
    label_column: Optional[str] = typer.Option(None, help="File: the label column (default 'label')."),
    feature_columns: Optional[str] = typer.Option(None, help="File: comma-separated feature columns (default: all others)."),
    id_column: Optional[str] = typer.Option(None, help="File: a unique integer sample id column."),
    split_column: Optional[str] = typer.Option(None, help="File: a column naming each row's split (train/test)."),
    test_fraction: Optional[float] = typer.Option(
        None, help="Without a split column: the fraction of each class held out for testing (default 0.2)."),
    image_size: Optional[str] = typer.Option(None, help="Images: resize all to HEIGHTxWIDTH (e.g. 32x32)."),
    standardize: bool = typer.Option(True, help="File: standardize the features (mean/std of the train split)."),
    parent: Optional[str] = typer.Option(None, help="The version this one derives from (id or name@hash)."),
    json_out: bool = typer.Option(False, "--json", help="Print the version as JSON."),
):
    """Add a data set version: validated, written as Parquet, tracked by DVC, recorded in the catalog."""
    from curation.catalog import Catalog
    from curation.data import sources
    from curation.data.contract import check_name
    from curation.data.versions import register, stage_version

    with user_errors():
        if seed is not None and seed < 0:
            raise CurationError(f"--seed must be >= 0, got {seed}", "give a non-negative seed")
        if name is not None:
            check_name(name)
        settings = load_settings()
        with steps(enabled=not json_out and err.is_terminal) as step:
            step("connecting to the catalog")
            Catalog(settings.catalog)
            step(f"loading {source}")
            loaded = sources.load(
                source, samples=samples, seed=seed, label_column=label_column,
                feature_columns=[c.strip() for c in feature_columns.split(",")] if feature_columns else None,
                id_column=id_column, split_column=split_column, test_fraction=test_fraction,
                image_size=_image_size(image_size), standardize=standardize)
            step(f"writing {loaded.table.num_rows:,} rows as Parquet")
            staged = stage_version(settings, loaded)
            step("tracking with DVC and recording in the catalog")
            info = register(settings, staged, name or loaded.default_name, loaded.source, parent)
    if json_out:
        emit_json(info.to_dict())
        return
    verb = "added" if info.created else "unchanged, already"
    out.print(f"[green]{verb}[/] {info.ref} (id {info.id}): {info.rows:,} rows, {info.num_features} features, "
              f"{len(info.classes)} classes, md5 {info.content_hash}")


def _image_size(text: Optional[str]) -> Optional[list[int]]:
    if text is None:
        return None
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise CurationError(f"--image-size {text!r} is not HEIGHTxWIDTH", "write e.g. --image-size 32x32")
    return [int(p) for p in parts]


@data_app.command("ls")
def data_ls(
    dataset: Optional[str] = typer.Argument(None, help="Only this data set."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """List data set versions."""
    from curation.catalog import Catalog
    from curation.data.versions import VersionInfo

    with user_errors():
        versions = [VersionInfo.of(v) for v in Catalog(load_settings().catalog).versions(dataset)]
    if json_out:
        emit_json([v.to_dict() for v in versions])
        return
    table = Table("id")
    table.add_column("version", no_wrap=True)
    for column in ("rows", "features", "classes", "splits", "parent", "created"):
        table.add_column(column)
    for v in versions:
        table.add_row(str(v.id), v.ref, f"{v.rows:,}", str(v.num_features), str(len(v.classes)),
                      " ".join(f"{k}:{n}" for k, n in v.splits.items()), str(v.parent_id or ""),
                      v.created_at[:16].replace("T", " "))
    out.print(table if versions else "no data set versions yet: add one with `curation data add mnist1d`")


@data_app.command("show")
def data_show(
    version: str = typer.Argument(..., help="Version id, data set name (newest) or name@hash."),
    head: int = typer.Option(5, help="Rows to preview."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Show one version: its manifest, where it lives, and its first rows."""
    from curation.data.store import features_numpy
    from curation.data.versions import open_version

    with user_errors():
        settings = load_settings()
        info, reader = open_version(settings, version)
        preview = reader.take(reader.sample_ids[: max(0, head)])
    shown = {**info.to_dict(), "class_names": reader.manifest.get("class_names"),
             "transform": reader.manifest.get("transform")}
    if json_out:
        emit_json(shown)
        return
    grid = Table.grid(padding=(0, 2))
    for key, value in shown.items():
        if key == "transform" and value:  # statistics per feature: in --json only
            value = {k: (f"{len(v)} values" if isinstance(v, list) and len(v) > 6 else v) for k, v in value.items()}
        if key != "created":
            grid.add_row(f"[bold]{key}[/]", json.dumps(value) if isinstance(value, (dict, list)) else str(value))
    out.print(grid)
    if preview.num_rows:
        feats = features_numpy(preview)
        names = reader.manifest.get("class_names")
        rows = Table("sample_id", "label", "features")
        for sid, label, f in zip(preview.column("sample_id").to_pylist(), preview.column("label").to_pylist(), feats):
            rows.add_row(str(sid), f"{label} ({names[label]})" if names else str(label),
                         " ".join(f"{x:.3f}" for x in f[:6]) + (" ..." if len(f) > 6 else ""))
        out.print(rows)


def _parse_params(pairs: list[str], budget: Optional[str], ratio: Optional[float], seed: Optional[int]) -> dict:
    """--param key=value (YAML-typed) plus the common options, as selector parameters."""
    import yaml

    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CurationError(f"--param {pair!r} is not key=value", "write e.g. --param optimizer=lazy")
        params[key.strip()] = yaml.safe_load(value)
    if budget is not None:
        try:
            params["budget"] = float(budget) if any(c in budget for c in ".eE") else int(budget)
        except ValueError:
            raise CurationError(f"--budget {budget!r} is not a number", "give a count like 500 or a fraction like 0.1") from None
    if ratio is not None:
        params["ratio"] = ratio
    if seed is not None:
        params["seed"] = seed
    return params


@app.command("select")
def select_cmd(
    version: str = typer.Argument(..., help="Version id, data set name (newest) or name@hash."),
    method: str = typer.Option("soft", "--method", "-m", help="Selection method (see `curation methods`)."),
    budget: Optional[str] = typer.Option(None, help="Subset size: a count (500) or a fraction (0.1)."),
    ratio: Optional[float] = typer.Option(None, help="Per-epoch sampling ratio (soft, rs2)."),
    seed: Optional[int] = typer.Option(None, help="Random seed (recorded with the plan)."),
    score_set: Optional[int] = typer.Option(None, help="Score set id whose scores/embeddings the method uses."),
    param: list[str] = typer.Option([], "--param", "-p", help="Method parameter key=value (repeatable)."),
    engine: str = typer.Option("local", help="local: in this process; dask: pairwise on a Dask cluster, for data "
                                             "larger than memory (see docs/distributed.md)."),
    scheduler: Optional[str] = typer.Option(None, help="With --engine dask: an existing scheduler, tcp://host:port "
                                                       "(default: a LocalCluster of this machine)."),
    json_out: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
):
    """Select a subset or a per-epoch plan from a version's train split and record it in the catalog."""
    from curation.selection.run import select_plan

    with user_errors():
        params = _parse_params(param, budget, ratio, seed)
        if engine not in ("local", "dask"):
            raise CurationError(f"--engine {engine!r} is not local or dask", "give --engine local or --engine dask")
        if scheduler is not None and engine != "dask":
            raise CurationError("--scheduler needs --engine dask", "add --engine dask")
        if engine == "dask" and method not in ("pairwise", "pairwise-distributed"):
            raise CurationError(f"--engine dask runs the pairwise method, not {method!r}", "add -m pairwise")
        settings = load_settings()
        if engine == "dask":
            from rich.progress import BarColumn

            from curation.distributed.run import select_distributed

            with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                          console=err, transient=True, disable=json_out or not err.is_terminal) as bar:
                task = bar.add_task("starting the cluster", total=1.0)
                report = lambda p: bar.update(  # noqa: E731
                    task, completed=p.fraction, description=f"{p.stage} {p.done}/{p.total}" if p.total > 1 else p.stage)
                info, _ = select_distributed(settings, version, params, score_set, scheduler, report=report)
        else:
            with steps(enabled=not json_out and err.is_terminal) as step:
                step(f"selecting with {method}")
                info, _ = select_plan(settings, version, method, params, score_set)
    if json_out:
        emit_json(info.to_dict())
        return
    size = f"{info.budget:,} samples" if info.budget else f"{info.ratio:g} of the data per epoch, fresh each epoch"
    out.print(f"[green]plan {info.id}[/] {info.method} on version {info.version_id}: {size} "
              f"(selection {info.selection_seconds:.2f} s){'' if info.path is None else ', ' + info.path}")


@app.command("methods")
def methods_cmd(json_out: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List the selection methods and their parameters."""
    from curation.selection import methods  # noqa: F401 - registers them
    from curation.selection.base import SELECTORS

    rows = {name: {"params": cls.defaults(), "doc": (cls.__doc__ or "").strip().splitlines()[0]}
            for name, cls in sorted(SELECTORS.items())}
    if json_out:
        emit_json(rows)
        return
    table = Table("method", "parameters (defaults)", "what it does")
    for name, row in rows.items():
        table.add_row(name, ", ".join(f"{k}={v}" for k, v in row["params"].items()), row["doc"])
    out.print(table)


@app.command()
def train(
    version: str = typer.Argument(..., help="Version id, data set name (newest) or name@hash."),
    arch: Optional[str] = typer.Option(None, help="Architecture: mlp, cnn1d, lenet5, resnet1d, resnet2d or a "
                                                  "registered one (default: resnet2d for images, else from the "
                                                  "feature shape)."),
    epochs: Optional[int] = typer.Option(None, help="Epochs (default: the architecture's)."),
    batch_size: Optional[int] = typer.Option(None, help="Batch size (default: the architecture's)."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (default: the architecture's)."),
    seed: int = typer.Option(0, help="Seed of initialisation and shuffling."),
    plan: Optional[str] = typer.Option(None, help="A catalog plan id (from `curation select`) or a Parquet plan "
                                                  "file (epoch, sample_id[, weight]); default: every train "
                                                  "sample every epoch."),
    resume: bool = typer.Option(False, "--resume", help="Continue the newest interrupted run with these "
                                                        "settings from its last checkpoint."),
    baseline: Optional[int] = typer.Option(None, help="Catalog id of a finished run to compare with "
                                                      "(target: 99% of its best accuracy)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    workers: int = typer.Option(2, help="Image versions: worker processes that decode the images."),
    augment: Optional[str] = typer.Option(None, help="Image versions: 'crop' (random crops) or 'crop-flip' (and "
                                                     "horizontal flips) of every training sample."),
    json_out: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
):
    """Train on a version (optionally with a selection plan); tracked in MLflow and the catalog."""
    from rich.progress import BarColumn, MofNCompleteColumn

    from curation.training.config import TrainConfig
    from curation.training.run import train_version
    from curation.training.trainer import Callback

    live = not json_out and err.is_terminal

    class Show(Callback):
        def __init__(self, progress: Progress):
            self.progress, self.task = progress, progress.add_task("training", total=None)

        def on_fit_start(self, config, epoch):
            self.progress.update(self.task, total=config.epochs, completed=epoch)

        def on_epoch_end(self, r):
            line = (f"epoch {r['epoch']}  accuracy {r['accuracy']:.4f}  loss {r['loss']:.4f}  "
                    f"coverage {r['coverage']:.3f}  {r['flops']:.3g} FLOPs  {r['seconds']:.1f}s")
            self.progress.update(self.task, completed=r["epoch"], description=line)
            if not live and not json_out:
                err.print(line, highlight=False, soft_wrap=True)

    with user_errors():
        config = TrainConfig.make(arch=arch, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device,
                                  workers=workers, augment=augment)
        settings = load_settings()
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, disable=not live) as progress:
            outcome = train_version(settings, version, config, plan, resume=resume, baseline=baseline,
                                    callbacks=[Show(progress)])
    if json_out:
        emit_json(outcome.to_dict())
        return
    s, c = outcome.summary, outcome.config
    out.print(f"[green]finished[/] run {outcome.run_id}: {c['arch']} on {outcome.version}, {c['epochs']} epochs "
              f"(MLflow run {outcome.mlflow_run_id})", soft_wrap=True)
    out.print(f"  accuracy {s['final_accuracy']:.4f} (best {s['best_accuracy']:.4f})  compute {s['total_flops']:.3g} "
              f"FLOPs  {s['total_seconds']:.1f}s  {s['accuracy_per_pflop']:.4g} accuracy/PFLOP", soft_wrap=True)
    if "target_accuracy" in s:
        speed = "not reached" if s["speedup_compute"] is None else f"{s['speedup_compute']:.2f}x less compute"
        out.print(f"  vs baseline run {baseline}: target {s['target_accuracy']:.4f}, {speed}", soft_wrap=True)
    out.print(f"  model {outcome.registered_model} v{outcome.registry_version} (catalog model "
              f"{outcome.model_version_id}), checkpoint {outcome.checkpoint}", soft_wrap=True)


@app.command()
def score(
    version: str = typer.Argument(..., help="Version id, data set name (newest) or name@hash."),
    arch: Optional[str] = typer.Option(None, help="Proxy architecture (default: from the feature shape)."),
    epochs: int = typer.Option(3, help="Epochs to train the proxy model."),
    seed: int = typer.Option(0, help="Seed of the proxy model."),
    model: Optional[int] = typer.Option(None, help="Score with this trained catalog model version instead."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    json_out: bool = typer.Option(False, "--json", help="Print the score set as JSON."),
):
    """Score every train sample (loss, EL2N, gradient norm, entropy, margin, forgetting, embeddings)."""
    from curation.scoring.run import score_version

    with user_errors():
        if epochs < 1:
            raise CurationError(f"--epochs must be at least 1, got {epochs}", "train the proxy for 1 or more epochs")
        settings = load_settings()
        with steps(enabled=not json_out and err.is_terminal) as step:
            step("training the proxy model and scoring" if model is None else f"scoring with model {model}")
            info = score_version(settings, version, arch, epochs, seed, model, device)
    if json_out:
        emit_json(info.to_dict())
        return
    out.print(f"[green]score set {info.id}[/] for version {info.version_id} ({info.scorer}): "
              f"{', '.join(info.columns)}; cost {info.ledger['total_flops']:.3g} FLOPs, "
              f"{info.ledger['total_seconds']:.1f} s -> use with `curation select --score-set {info.id}`")


@app.command()
def compare(
    version: str = typer.Argument(..., help="Version id, data set name (newest) or name@hash."),
    method: list[str] = typer.Option(["soft:ratio=0.3", "uniform:budget=0.3"], "--method", "-m",
                                     help="method[:key=value,...], repeatable (see `curation methods`)."),
    arch: Optional[str] = typer.Option(None, help="Architecture (default: from the feature shape)."),
    epochs: Optional[int] = typer.Option(None, help="Epochs of every run (default: the architecture's)."),
    seed: int = typer.Option(0, help="Seed of every run."),
    baseline: Optional[int] = typer.Option(None, help="A finished full-data run to compare with (else trained)."),
    score_set: Optional[int] = typer.Option(None, help="Score set for score-based methods."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Train the full-data baseline and each method's plan; print accuracy, compute and speedup side by side."""
    from curation.compare import compare as run_compare
    from curation.training.config import TrainConfig

    with user_errors():
        config = TrainConfig.make(arch=arch, epochs=epochs, seed=seed)
        settings = load_settings()
        with steps(enabled=not json_out and err.is_terminal) as step:
            step(f"training the baseline and {len(method)} methods")
            rows = [r.to_dict() for r in run_compare(settings, version, method, config, baseline, score_set)]
    if json_out:
        emit_json(rows)
        return
    table = Table(title=f"version {version} at equal compute; target: 99% of the baseline's best accuracy")
    table.add_column("method", no_wrap=True)
    for header in ("run", "epochs", "best acc", "GFLOP", "seconds", "backward", "x compute", "x time"):
        table.add_column(header, justify="right")
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    for r in rows:
        params = ",".join(f"{v}" for v in r["params"].values())
        table.add_row(f"{r['method']} {params}".strip(), str(r["run_id"]), str(r["epochs"]),
                      f"{r['best_accuracy']:.4f}", f"{r['total_flops'] / 1e9:.1f}", f"{r['total_seconds']:.1f}",
                      f"{r['backward_samples']:,}",
                      fmt(r.get("speedup_compute"), ".2f"), fmt(r.get("speedup_time"), ".2f"))
    out.print(table)
    out.print("Compare the runs in the MLflow UI: `make ui`, then http://127.0.0.1:5000")


@app.command()
def stage(
    name: str = typer.Argument(..., help="prepare, score, baseline, select, train, method, evaluate or report."),
    item: Optional[str] = typer.Argument(None, help="The method, for the `method` stage."),
):
    """Run one stage of the DVC pipeline from the project root (dvc.yaml calls these; `dvc repro` runs them)."""
    from curation.stages import run_stage

    with user_errors():
        run_stage(name, item)


@app.command()
def serve(version: str = typer.Option("mnist1d", help="Version the scheduled flows work on.")):
    """Register the deployments (with schedules) with the Prefect server and run their flows until Ctrl-C."""
    import os

    with user_errors():
        if not os.environ.get("PREFECT_API_URL"):
            raise CurationError("PREFECT_API_URL is not set: there is no Prefect server to register with",
                                "start one with `make ui` and export PREFECT_API_URL=http://127.0.0.1:4200/api")
        from flows.deployments import serve_all

        serve_all(version)


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", help="Address to bind (127.0.0.1 keeps the servers local)."),
    prefect_port: int = typer.Option(4200, help="Prefect server port."),
    mlflow_port: int = typer.Option(5000, help="MLflow UI port."),
):
    """Start a local Prefect server and the MLflow UI, print their addresses; Ctrl-C stops both."""
    from curation import ui as servers

    with user_errors():
        servers.run(load_settings(), host, prefect_port, mlflow_port)


@app.command()
def retrain(
    dataset: str = typer.Argument(..., help="Data set whose chunks (versions) the lineage follows."),
    lineage: Optional[str] = typer.Option(None, help="Lineage name (default: the mode); each lineage keeps "
                                                    "its own champion and consumed chunks."),
    mode: str = typer.Option("proactive", help="proactive, full (retrain from scratch) or periodic."),
    new_per_batch: int = typer.Option(32, "--t", help="New samples per batch (the rest from history)."),
    strategy: str = typer.Option("uniform", help="History sampling: uniform, window or time."),
    window: int = typer.Option(3, help="Chunks of history for --strategy window."),
    passes: int = typer.Option(4, help="Passes over the new chunks per proactive step."),
    every: int = typer.Option(3, help="Periodic mode: retrain every this many chunks."),
    min_samples: int = typer.Option(1000, help="Amount trigger: new train samples that call for training."),
    rho: float = typer.Option(1e-3, help="Share of each tensor shipped per sparse update."),
    ship: Optional[str] = typer.Option(None, help="batch: sparse training, an update after every training batch "
                                                  "(proactive's default; about 1.5x the --passes of dense training "
                                                  "match its accuracy); model: one update per promoted model."),
    arch: Optional[str] = typer.Option(None, help="Architecture (default: from the feature shape)."),
    epochs: Optional[int] = typer.Option(None, help="Epochs of a from-scratch training (default: the arch's)."),
    seed: int = typer.Option(0, help="Seed of initialisation and sampling."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    json_out: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
):
    """Train on the chunks that landed since the last run (if a trigger fires), promote, ship a sparse update."""
    from curation.continual.proactive import ContinualConfig
    from curation.continual.retrain import retrain as run_retrain
    from curation.training.config import TrainConfig

    with user_errors():
        config = ContinualConfig.make(mode=mode, new_per_batch=new_per_batch, strategy=strategy, window=window,
                                      passes=passes, every=every, min_samples=min_samples)
        train_config = TrainConfig.make(arch=arch, epochs=epochs, seed=seed, device=device)
        settings = load_settings()
        with steps(enabled=not json_out and err.is_terminal) as step:
            step(f"retraining {dataset}")
            outcome = run_retrain(settings, dataset, lineage, config, train_config, rho, ship)
    if json_out:
        emit_json(outcome.to_dict())
        return
    for d in outcome.decisions:
        out.print(f"  trigger {d['trigger']}: {'fired' if d['fire'] else 'quiet'} ({d['reason']})", soft_wrap=True)
    if outcome.status != "trained":
        why = "no new versions" if outcome.status == "up-to-date" else "no trigger fired; the chunks wait"
        out.print(f"{outcome.lineage}: nothing trained ({why})", soft_wrap=True)
    else:
        verdict = "promoted to champion" if outcome.promoted else "champion kept"
        out.print(f"[green]trained[/] model {outcome.model_version_id} (parent {outcome.parent_model_version_id}) on "
                  f"versions {outcome.new_versions}: accuracy {outcome.accuracy:.4f} vs champion "
                  f"{outcome.champion_accuracy if outcome.champion_accuracy is not None else '-'}: {verdict}",
                  soft_wrap=True)
    if outcome.shipped:
        d = outcome.shipped
        which = f"update {d['sequence']}" if d["updates"] == 1 else f"updates {d['first_sequence']}-{d['sequence']}"
        out.print(f"  shipped {which}: {d['bytes']:,} bytes "
                  f"({d['bytes_ratio']:.2%} of dense per update), deployed accuracy {d['deployed_accuracy']:.4f} "
                  f"vs trained {d['trained_accuracy']:.4f}", soft_wrap=True)


def main() -> None:  # pragma: no cover - console entry point
    app()
