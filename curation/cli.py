"""The `curation` command line (typer + rich). User errors: one line on stderr, exit code 2."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer._click.exceptions import UsageError  # typer 0.29 vendors click; its errors are these classes
from typer.core import TyperCommand, TyperGroup

from curation.choices import Amp, Augment, DataPath, Device, Engine, Mode, Policy, RunStatus, Ship, Strategy
from curation.config import load_settings
from curation.errors import CurationError


class OneLineUsageErrors(TyperGroup):
    """The top-level group: a usage error (a bad choice, a missing argument, an unknown command or option)
    is one line naming the problem and the help to read, exit code 2, like every other user error."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "curation"
            message = exc.format_message().replace("Value error, ", "").rstrip(".")
            err.print(
                f"[bold red]error:[/] {message}; see `{where} --help`", markup=True, highlight=False, soft_wrap=True
            )
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    help="Train on less data without losing accuracy: curate, train, prove it.",
    cls=OneLineUsageErrors,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Data set versions: add, list, show.", no_args_is_help=True)
app.add_typer(data_app, name="data")
scores_app = typer.Typer(help="Score sets: list, show.", no_args_is_help=True)
plans_app = typer.Typer(help="Selection plans: list, show.", no_args_is_help=True)
runs_app = typer.Typer(help="Training runs: list, show.", no_args_is_help=True)
models_app = typer.Typer(help="Trained model versions: list, show.", no_args_is_help=True)
app.add_typer(scores_app, name="scores")
app.add_typer(plans_app, name="plans")
app.add_typer(runs_app, name="runs")
app.add_typer(models_app, name="models")

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
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not enabled,
    ) as progress:
        current = {}

        def step(description: str) -> None:
            if "task" in current:
                progress.update(current["task"], completed=1, total=1)
            current["task"] = progress.add_task(description, total=None)

        yield step


def emit_json(payload) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


@app.command()
def init(
    remote: str | None = typer.Option(
        None,
        help="DVC's default remote (a folder or an object-store URL): "
        "every new version is pushed there, a missing file pulled.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
):
    """Prepare this directory: git and DVC if missing, the catalog, the MLflow store, a DVC remote."""
    from curation.catalog import redact
    from curation.project import init_project

    with user_errors():
        settings = load_settings()
        done = init_project(settings, remote)
    summary = {
        "home": str(settings.home),
        "catalog": redact(settings.catalog),
        "tracking": redact(settings.tracking),
        "data": str(settings.data_path),
        "done": done,
    }
    if json_out:
        emit_json(summary)
        return
    out.print(f"[green]ready[/] {settings.home} ({', '.join(done) or 'already initialised'})")
    out.print(f"  catalog  {summary['catalog']}\n  tracking {summary['tracking']}\n  data     {summary['data']}")


@data_app.command("add")
def data_add(
    source: str = typer.Argument(
        ...,
        help="'mnist1d', 'digits', 'mnist1d-drift' (a chunk of the drifting stream), "
        "a .parquet/.csv file, or a folder of images with one subfolder per class.",
    ),
    name: str | None = typer.Option(None, help="Data set name (default: the source's name)."),
    samples: int | None = typer.Option(None, help="mnist1d: number of samples (default 5000, the published set)."),
    seed: int | None = typer.Option(None, help="mnist1d/digits: generator or split seed."),
    label_column: str | None = typer.Option(None, help="File: the label column (default 'label')."),
    feature_columns: str | None = typer.Option(
        None, help="File: comma-separated feature columns (default: all others)."
    ),
    id_column: str | None = typer.Option(None, help="File: a unique integer sample id column."),
    split_column: str | None = typer.Option(None, help="File: a column naming each row's split (train/test)."),
    test_fraction: float | None = typer.Option(
        None, help="Without a split column: the fraction of each class held out for testing (default 0.2)."
    ),
    image_size: str | None = typer.Option(None, help="Images: resize all to HEIGHTxWIDTH (e.g. 32x32)."),
    standardize: bool = typer.Option(True, help="File: standardize the features (mean/std of the train split)."),
    parent: str | None = typer.Option(None, help="The version this one derives from (id or name@hash)."),
    chunk: bool = typer.Option(
        False,
        "--chunk",
        help="Add it as the next chunk of the stream --name (what "
        "`curation retrain` trains on): same features and classes, "
        "sample ids that collide with earlier chunks' get fresh ones.",
    ),
    at: int | None = typer.Option(
        None, "--step", help="mnist1d-drift: which chunk of the drifting stream (default: the data set's next)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the version as JSON."),
):
    """Add a data set version: validated, written as Parquet, tracked by DVC, recorded in the catalog."""
    from curation.catalog import Catalog
    from curation.data import sources
    from curation.data.contract import check_name
    from curation.data.store import GROUPED_BY_LABEL
    from curation.data.stream import ORIGINAL_ID, add_chunk, chunks
    from curation.data.versions import push_version, register, stage_version

    with user_errors():
        if seed is not None and seed < 0:
            raise CurationError(f"--seed must be >= 0, got {seed}", "give a non-negative seed")
        chunk = chunk or source == "mnist1d-drift"  # the drifting stream comes in chunks
        if at is not None and (source != "mnist1d-drift" or at < 0):
            raise CurationError(
                f"--step {at} needs source mnist1d-drift and a step >= 0",
                "drop --step, or give `mnist1d-drift --step K` with K >= 0",
            )
        if chunk and parent is not None:
            raise CurationError(
                "--parent with --chunk: a chunk's parent is the stream's previous chunk", "drop --parent"
            )
        if name is not None:
            check_name(name)
        settings = load_settings()
        with steps(enabled=not json_out and err.is_terminal) as step:
            step("connecting to the catalog")
            Catalog(settings.catalog)
            if source == "mnist1d-drift" and at is None:
                at = len(chunks(settings, name or "stream"))
            step(f"loading {source}")
            loaded = sources.load(
                source,
                samples=samples,
                seed=seed,
                step=at,
                label_column=label_column,
                feature_columns=[c.strip() for c in feature_columns.split(",")] if feature_columns else None,
                id_column=id_column,
                split_column=split_column,
                test_fraction=test_fraction,
                image_size=_image_size(image_size),
                standardize=standardize,
            )
            if chunk:
                step(f"adding {loaded.rows:,} rows as the next chunk")
                info = add_chunk(settings, name or loaded.default_name, loaded, renumber=True)
            else:
                step(f"writing {loaded.rows:,} rows as Parquet")
                staged = stage_version(settings, loaded)
                step("tracking with DVC and recording in the catalog")
                info = register(settings, staged, name or loaded.default_name, loaded.source, parent)
                if staged.class_mixing < GROUPED_BY_LABEL:
                    err.print(
                        f"[yellow]warning:[/] the rows are grouped by label (class mixing of the row groups "
                        f"{staged.class_mixing:.2f}, 1 for shuffled rows): a streamed epoch mixes a few row groups at "
                        "a time, so its batches would hold few classes; shuffle the rows before adding them, or "
                        "train this version with --data-path memory",
                        soft_wrap=True,
                    )
            step("pushing to the DVC remote")
            push_version(settings, info)
    if json_out:
        emit_json(info.to_dict())
        return
    verb = "added" if info.created else "unchanged, already"
    out.print(
        f"[green]{verb}[/] {info.ref} (id {info.id}): {info.rows:,} rows, {info.num_features} features, "
        f"{len(info.classes)} classes, md5 {info.content_hash}"
    )
    if "renumbered" in info.source:
        r = info.source["renumbered"]
        out.print(
            f"  {r['colliding']:,} sample ids collided with earlier chunks: ids renumbered from {r['first_id']:,} "
            f"on, the source's ids kept in column {ORIGINAL_ID}",
            soft_wrap=True,
        )


def _abridged(transform: dict) -> dict:
    """A version's transform for the terminal: statistics per feature counted, not listed (--json has them)."""
    return {k: (f"{len(v)} values" if isinstance(v, list) and len(v) > 6 else v) for k, v in transform.items()}


def _image_size(text: str | None) -> list[int] | None:
    if text is None:
        return None
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise CurationError(f"--image-size {text!r} is not HEIGHTxWIDTH", "write e.g. --image-size 32x32")
    return [int(p) for p in parts]


@data_app.command("ls")
def data_ls(
    dataset: str | None = typer.Argument(None, help="Only this data set."),
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
        table.add_row(
            str(v.id),
            v.ref,
            f"{v.rows:,}",
            str(v.num_features),
            str(len(v.classes)),
            " ".join(f"{k}:{n}" for k, n in v.splits.items()),
            str(v.parent_id or ""),
            v.created_at[:16].replace("T", " "),
        )
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
    shown = {
        **info.to_dict(),
        "class_names": reader.manifest.get("class_names"),
        "transform": reader.manifest.get("transform"),
    }
    if json_out:
        emit_json(shown)
        return
    show_record({k: (_abridged(v) if k == "transform" and v else v) for k, v in shown.items() if k != "created"})
    if preview.num_rows:
        feats = features_numpy(preview)
        names = reader.manifest.get("class_names")
        rows = Table("sample_id", "label", "features")
        for sid, label, f in zip(preview.column("sample_id").to_pylist(), preview.column("label").to_pylist(), feats):
            rows.add_row(
                str(sid),
                f"{label} ({names[label]})" if names else str(label),
                " ".join(f"{x:.3f}" for x in f[:6]) + (" ..." if len(f) > 6 else ""),
            )
        out.print(rows)


def show_record(record: dict) -> None:
    """One catalog record as a two-column grid (nested values as JSON)."""
    grid = Table.grid(padding=(0, 2))
    for key, value in record.items():
        text = json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
        grid.add_row(f"[bold]{key}[/]", text)
    out.print(grid)


def list_table(records: list[dict], columns: dict, empty: str) -> None:
    """Records as a table: ``columns`` maps a header to a function of a record giving its cell."""
    table = Table(*columns)
    for record in records:
        table.add_row(*(columns[header](record) for header in columns))
    out.print(table if records else empty)


def _number(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _version_cell(record: dict) -> str:
    return f"{record['version']} ({record['version_id']})"


def _when(record: dict, key: str = "created_at") -> str:
    return (record.get(key) or "")[:16].replace("T", " ")


DATASET_FILTER = typer.Option(None, "--dataset", "-d", help="Only this data set's records.")
JSON_OUT = typer.Option(False, "--json", help="Print JSON.")
WORKERS = typer.Option(2, help="Worker processes that decode images and read streamed splits.")
DATA_PATH = typer.Option(
    DataPath.auto,
    help="Hold the splits in memory, stream them from disk, or auto: stream a split over half the free memory.",
)
NPROC = typer.Option(
    1, min=1, help="Data-parallel training processes (torch.distributed: gloo on the CPU, one GPU each on CUDA)."
)


@contextmanager
def _catalog():
    """The project's catalog, with user errors as one line."""
    from curation.catalog import Catalog

    with user_errors():
        yield Catalog(load_settings().catalog)


def _ls(records_of, json_out: bool, columns: dict, empty: str, *filters) -> None:
    with _catalog() as catalog:
        records = records_of(catalog, *filters)
    if json_out:
        emit_json(records)
    else:
        list_table(records, columns, empty)


def _show(record_of, ident: int, json_out: bool) -> None:
    with _catalog() as catalog:
        record = record_of(catalog, ident)
    if json_out:
        emit_json(record)
    else:
        show_record(record)


@scores_app.command("ls")
def scores_ls(dataset: str | None = DATASET_FILTER, json_out: bool = JSON_OUT):
    """List score sets (the ids `curation select --score-set` takes)."""
    from curation.catalog import listing

    _ls(
        listing.score_sets,
        json_out,
        {
            "id": lambda r: str(r["id"]),
            "version": _version_cell,
            "scorer": lambda r: r["scorer"],
            "columns": lambda r: str(len(r["columns"])),
            "GFLOP": lambda r: _number(r["ledger"].get("total_flops", 0) / 1e9, ".1f"),
            "seconds": lambda r: _number(r["ledger"].get("total_seconds"), ".1f"),
            "created": _when,
        },
        "no score sets yet: make one with `curation score VERSION`",
        dataset,
    )


@scores_app.command("show")
def scores_show(
    score_set: int = typer.Argument(..., help="Score set id (see `curation scores ls`)."), json_out: bool = JSON_OUT
):
    """Show one score set: its scorer, parameters, columns, cost, file and the plans that used it."""
    from curation.catalog import listing

    _show(listing.score_set, score_set, json_out)


@plans_app.command("ls")
def plans_ls(dataset: str | None = DATASET_FILTER, json_out: bool = JSON_OUT):
    """List selection plans (the ids `curation train --plan` takes)."""
    from curation.catalog import listing

    _ls(
        listing.plans,
        json_out,
        {
            "id": lambda r: str(r["id"]),
            "version": _version_cell,
            "method": lambda r: r["method"],
            "size": lambda r: f"{r['budget']:,}" if r["budget"] else f"{_number(r['ratio'], 'g')} per epoch",
            "seed": lambda r: str(r["seed"]),
            "score set": lambda r: str(r["score_set_id"] or ""),
            "seconds": lambda r: _number(r["ledger"].get("selection_seconds"), ".2f"),
            "created": _when,
        },
        "no selection plans yet: make one with `curation select VERSION`",
        dataset,
    )


@plans_app.command("show")
def plans_show(plan: int = typer.Argument(..., help="Plan id (see `curation plans ls`)."), json_out: bool = JSON_OUT):
    """Show one plan: method, parameters, size, seed, score set, cost, file, hash and the runs trained on it."""
    from curation.catalog import listing

    _show(listing.plan, plan, json_out)


@runs_app.command("ls")
def runs_ls(
    dataset: str | None = DATASET_FILTER,
    status: RunStatus | None = typer.Option(None, case_sensitive=False, help="Only runs with this status."),
    json_out: bool = JSON_OUT,
):
    """List training runs (the ids `curation train --baseline` takes)."""
    from curation.catalog import listing

    accuracy = lambda r: r["summary"].get("best_accuracy", r["summary"].get("accuracy"))  # noqa: E731
    _ls(
        listing.runs,
        json_out,
        {
            "id": lambda r: str(r["id"]),
            "version": _version_cell,
            "arch": lambda r: r["architecture"],
            "plan": lambda r: str(r["plan_id"] or ""),
            "lineage": lambda r: r["lineage"] or "",
            "status": lambda r: r["status"],
            "accuracy": lambda r: _number(accuracy(r), ".4f"),
            "GFLOP": lambda r: _number(r["ledger"].get("total_flops", 0) / 1e9, ".1f"),
            "MLflow run": lambda r: r["mlflow_run_id"] or "",
            "started": lambda r: _when(r, "started_at"),
        },
        "no training runs yet: start one with `curation train VERSION`",
        dataset,
        status and status.value,
    )


@runs_app.command("show")
def runs_show(run: int = typer.Argument(..., help="Run id (see `curation runs ls`)."), json_out: bool = JSON_OUT):
    """Show one run: parameters, status, summary, compute ledger, MLflow run, models and per-epoch history."""
    from curation.catalog import listing

    with _catalog() as catalog:
        record = listing.run(catalog, run)
    if json_out:
        emit_json(record)
        return
    history = record.pop("history")
    show_record(record)
    if history:
        table = Table("epoch", "accuracy", "loss", "coverage", "GFLOP", "seconds")
        for h in history:
            table.add_row(
                str(h["epoch"]),
                _number(h.get("accuracy"), ".4f"),
                _number(h.get("loss"), ".4f"),
                _number(h.get("coverage"), ".3f"),
                _number(h.get("flops", 0) / 1e9, ".2f"),
                _number(h.get("seconds"), ".1f"),
            )
        out.print(table)


@models_app.command("ls")
def models_ls(
    dataset: str | None = DATASET_FILTER,
    lineage: str | None = typer.Option(None, help="Only this retraining lineage's models."),
    json_out: bool = JSON_OUT,
):
    """List trained model versions (the ids `curation score --model` takes)."""
    from curation.catalog import listing

    accuracy = lambda r: r["metrics"].get("best_accuracy", r["metrics"].get("accuracy"))  # noqa: E731
    _ls(
        listing.models,
        json_out,
        {
            "id": lambda r: str(r["id"]),
            "version": _version_cell,
            "registered": lambda r: f"{r['name']} v{r['registry_version']}" if r["registry_version"] else r["name"],
            "arch": lambda r: r["architecture"],
            "run": lambda r: str(r["run_id"]),
            "parent": lambda r: str(r["parent_id"] or ""),
            "lineage": lambda r: r["lineage"] or "",
            "promoted": lambda r: "yes" if r["promoted"] else "",
            "accuracy": lambda r: _number(accuracy(r), ".4f"),
            "created": _when,
        },
        "no models yet: train one with `curation train VERSION`",
        dataset,
        lineage,
    )


@models_app.command("show")
def models_show(
    model: int = typer.Argument(..., help="Model version id (see `curation models ls`)."), json_out: bool = JSON_OUT
):
    """Show one model: its run, parent, lineage, metrics, checkpoint, hash, registry version and shipped updates."""
    from curation.catalog import listing

    _show(listing.model, model, json_out)


def _parse_params(pairs: list[str], budget: str | None, ratio: float | None, seed: int | None) -> dict:
    """--param key=value (YAML-typed) plus the common options, as selector parameters."""
    from curation.selection.params import parse_pairs

    params = parse_pairs(pairs, "--param", "--param optimizer=lazy")
    if budget is not None:
        try:
            params["budget"] = float(budget) if any(c in budget for c in ".eE") else int(budget)
        except ValueError:
            raise CurationError(
                f"--budget {budget!r} is not a number", "give a count like 500 or a fraction like 0.1"
            ) from None
    if ratio is not None:
        params["ratio"] = ratio
    if seed is not None:
        params["seed"] = seed
    return params


@app.command("select")
def select_cmd(
    version: str = typer.Argument(..., help="Version id, data set name (newest) or name@hash."),
    method: str = typer.Option("soft", "--method", "-m", help="Selection method (see `curation methods`)."),
    budget: str | None = typer.Option(None, help="Subset size: a count (500) or a fraction (0.1)."),
    ratio: float | None = typer.Option(None, help="Per-epoch sampling ratio (soft, rs2)."),
    seed: int | None = typer.Option(None, help="Random seed (recorded with the plan)."),
    score_set: int | None = typer.Option(
        None, help="Score set id whose scores/embeddings the method uses (see `curation scores ls`)."
    ),
    param: list[str] = typer.Option([], "--param", "-p", help="Method parameter key=value (repeatable)."),
    engine: Engine = typer.Option(
        Engine.local,
        help="local: in this process; dask: pairwise on a Dask cluster, for "
        "data larger than memory (see docs/distributed.md).",
    ),
    scheduler: str | None = typer.Option(
        None,
        help="With --engine dask: an existing scheduler, tcp://host:port (default: a LocalCluster of this machine).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
):
    """Select a subset or a per-epoch plan from a version's train split and record it in the catalog."""
    from curation.selection.run import select_plan

    with user_errors():
        params = _parse_params(param, budget, ratio, seed)
        if scheduler is not None and engine != "dask":
            raise CurationError("--scheduler needs --engine dask", "add --engine dask")
        if engine == "dask" and method not in ("pairwise", "pairwise-distributed"):
            raise CurationError(f"--engine dask runs the pairwise method, not {method!r}", "add -m pairwise")
        settings = load_settings()
        if engine == "dask":
            from rich.progress import BarColumn

            from curation.distributed.run import select_distributed

            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TimeElapsedColumn(),
                console=err,
                transient=True,
                disable=json_out or not err.is_terminal,
            ) as bar:
                task = bar.add_task("starting the cluster", total=1.0)
                report = lambda p: bar.update(  # noqa: E731
                    task, completed=p.fraction, description=f"{p.stage} {p.done}/{p.total}" if p.total > 1 else p.stage
                )
                info, _ = select_distributed(settings, version, params, score_set, scheduler, report=report)
        else:
            with steps(enabled=not json_out and err.is_terminal) as step:
                step(f"selecting with {method}")
                info, _ = select_plan(settings, version, method, params, score_set)
    if json_out:
        emit_json(info.to_dict())
        return
    size = f"{info.budget:,} samples" if info.budget else f"{info.ratio:g} of the data per epoch, fresh each epoch"
    out.print(
        f"[green]plan {info.id}[/] {info.method} on version {info.version_id}: {size} "
        f"(selection {info.selection_seconds:.2f} s){'' if info.path is None else ', ' + info.path}"
    )


@app.command("methods")
def methods_cmd(json_out: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List the selection methods and their parameters (kind: a plan made before training, or online:
    decided inside training)."""
    from curation.selection import methods  # noqa: F401 - registers them
    from curation.selection.base import SELECTORS

    rows = {
        name: {
            "params": cls.defaults(),
            "kind": "online" if cls.online else "plan",
            "doc": (cls.__doc__ or "").strip().splitlines()[0],
        }
        for name, cls in sorted(SELECTORS.items())
    }
    if json_out:
        emit_json(rows)
        return
    table = Table("method", "kind", "parameters (defaults)", "what it does")
    for name, row in rows.items():
        table.add_row(name, row["kind"], ", ".join(f"{k}={v}" for k, v in row["params"].items()), row["doc"])
    out.print(table)


class ArchitecturesInHelp(TyperCommand):
    """A command whose --help lists the registered architectures under --arch, read from the models registry
    when the help is shown (so torch is imported then, not on every command)."""

    def format_help(self, ctx, formatter) -> None:
        from models import names

        for param in self.params:
            if param.name == "arch" and "Registered:" not in (param.help or ""):
                param.help = f"{param.help} Registered: {', '.join(names())}."
        super().format_help(ctx, formatter)


@app.command(cls=ArchitecturesInHelp)
def train(
    version: str = typer.Argument(..., help="Version id, data set name (newest) or name@hash."),
    arch: str | None = typer.Option(
        None, help="Architecture (default: resnet2d for images, else from the feature shape)."
    ),
    epochs: int | None = typer.Option(None, help="Epochs (default: the architecture's)."),
    batch_size: int | None = typer.Option(None, help="Batch size (default: the architecture's)."),
    lr: float | None = typer.Option(None, help="Peak learning rate (default: the architecture's)."),
    budget: float | None = typer.Option(
        None,
        help="Compute budget: this share (0, 1] of the backward samples "
        "of --epochs full epochs; the run stops there, its learning "
        "rate decaying linearly to 0 at that point.",
    ),
    seed: int = typer.Option(0, help="Seed of initialisation and shuffling."),
    plan: str | None = typer.Option(
        None,
        help="A catalog plan id (`curation plans ls`) or a Parquet plan "
        "file (epoch, sample_id[, weight]); default: every train "
        "sample every epoch.",
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the newest interrupted run with these settings from its last checkpoint."
    ),
    baseline: int | None = typer.Option(
        None,
        help="Catalog id of a finished run to compare with (target: 99% of its best accuracy; `curation runs ls`).",
    ),
    device: Device = typer.Option(Device.auto, help="Where to train (auto: the GPU when one is found)."),
    amp: Amp | None = typer.Option(
        None, help="Mixed precision (default: bf16 on a GPU that supports it, else fp16; off on the CPU)."
    ),
    compile_model: bool = typer.Option(False, "--compile", help="Run the model through torch.compile."),
    workers: int = WORKERS,
    data_path: DataPath = DATA_PATH,
    augment: Augment | None = typer.Option(
        None, help="Image versions: random crops (and horizontal flips) of every training sample."
    ),
    nproc: int = NPROC,
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
            line = (
                f"epoch {r['epoch']}  accuracy {r['accuracy']:.4f}  loss {r['loss']:.4f}  "
                f"coverage {r['coverage']:.3f}  {r['flops']:.3g} FLOPs  {r['seconds']:.1f}s"
            )
            self.progress.update(self.task, completed=r["epoch"], description=line)
            if not live and not json_out:
                err.print(line, highlight=False, soft_wrap=True)

    with user_errors():
        config = TrainConfig.make(
            arch=arch,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            budget=budget,
            seed=seed,
            device=device,
            amp=amp,
            compile=compile_model,
            workers=workers,
            data_path=data_path,
            augment=augment,
            nproc=nproc,
        )
        settings = load_settings()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=not live,
        ) as progress:
            outcome = train_version(
                settings, version, config, plan, resume=resume, baseline=baseline, callbacks=[Show(progress)]
            )
    if json_out:
        emit_json(outcome.to_dict())
        return
    s, c = outcome.summary, outcome.config
    out.print(
        f"[green]finished[/] run {outcome.run_id}: {c['arch']} on {outcome.version}, {c['epochs']} epochs "
        f"(MLflow run {outcome.mlflow_run_id})",
        soft_wrap=True,
    )
    out.print(
        f"  accuracy {s['final_accuracy']:.4f} (best {s['best_accuracy']:.4f})  compute {s['total_flops']:.3g} "
        f"FLOPs  {s['total_seconds']:.1f}s  {s['accuracy_per_pflop']:.4g} accuracy/PFLOP",
        soft_wrap=True,
    )
    if "target_accuracy" in s:
        speed = "not reached" if s["speedup_compute"] is None else f"{s['speedup_compute']:.2f}x less compute"
        out.print(f"  vs baseline run {baseline}: target {s['target_accuracy']:.4f}, {speed}", soft_wrap=True)
    out.print(
        f"  model {outcome.registered_model} v{outcome.registry_version} (catalog model "
        f"{outcome.model_version_id}), checkpoint {outcome.checkpoint}",
        soft_wrap=True,
    )


@app.command(cls=ArchitecturesInHelp)
def score(
    version: str = typer.Argument(..., help="Version id, data set name (newest) or name@hash."),
    arch: str | None = typer.Option(None, help="Proxy architecture (default: from the feature shape)."),
    epochs: int = typer.Option(3, help="Epochs to train the proxy model."),
    seed: int = typer.Option(0, help="Seed of the proxy model."),
    model: int | None = typer.Option(
        None, help="Score with this trained catalog model version instead (see `curation models ls`)."
    ),
    device: Device = typer.Option(Device.auto, help="Where to train (auto: the GPU when one is found)."),
    workers: int = WORKERS,
    data_path: DataPath = DATA_PATH,
    engine: Engine = typer.Option(
        Engine.local,
        help="local: score in this process; dask: the proxy trained here, the train split scored on a Dask "
        "cluster by row groups, same scores (see docs/distributed.md).",
    ),
    scheduler: str | None = typer.Option(
        None,
        help="With --engine dask: an existing scheduler, tcp://host:port (default: a LocalCluster of this machine).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the score set as JSON."),
):
    """Score every train sample (loss, EL2N, gradient norm, entropy, margin, forgetting, embeddings)."""
    from curation.scoring.run import score_version

    with user_errors():
        if epochs < 1:
            raise CurationError(f"--epochs must be at least 1, got {epochs}", "train the proxy for 1 or more epochs")
        settings = load_settings()  # score_version refuses --scheduler without --engine dask
        with steps(enabled=not json_out and err.is_terminal) as step:
            step("training the proxy model and scoring" if model is None else f"scoring with model {model}")
            info = score_version(
                settings, version, arch, epochs, seed, model, device, data_path, workers, engine, scheduler
            )
    if json_out:
        emit_json(info.to_dict())
        return
    out.print(
        f"[green]score set {info.id}[/] for version {info.version_id} ({info.scorer}): "
        f"{', '.join(info.columns)}; cost {info.ledger['total_flops']:.3g} FLOPs, "
        f"{info.ledger['total_seconds']:.1f} s -> use with `curation select --score-set {info.id}`"
    )


@app.command(cls=ArchitecturesInHelp)
def compare(
    version: str = typer.Argument(..., help="Version id, data set name (newest) or name@hash."),
    method: list[str] = typer.Option(
        ["soft:ratio=0.3", "uniform:budget=0.3"],
        "--method",
        "-m",
        help="method[:key=value,...], repeatable (see `curation methods`).",
    ),
    arch: str | None = typer.Option(None, help="Architecture (default: from the feature shape)."),
    epochs: int | None = typer.Option(None, help="Epochs of every run (default: the architecture's)."),
    seed: int = typer.Option(0, help="Seed of every run."),
    baseline: int | None = typer.Option(
        None, help="A finished full-data run to compare with (else trained; see `curation runs ls`)."
    ),
    score_set: int | None = typer.Option(None, help="Score set for score-based methods (`curation scores ls`)."),
    budget: list[float] = typer.Option(
        [],
        help="Run every method at this share of the full run's backward "
        "samples (schedule fitted), beside full-shortened; repeatable.",
    ),
    nproc: int = NPROC,
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Train the full-data baseline and each method's plan; print accuracy, compute and speedup side by side."""
    from curation import reports
    from curation.catalog import redact
    from curation.compare import compare as run_compare
    from curation.training.config import TrainConfig

    with user_errors():
        config = TrainConfig.make(arch=arch, epochs=epochs, seed=seed, nproc=nproc)
        settings = load_settings()
        with steps(enabled=not json_out and err.is_terminal) as step:
            step(f"training the baseline and {len(method)} methods")
            rows = [r.to_dict() for r in run_compare(settings, version, method, config, baseline, score_set, budget)]
    if json_out:
        emit_json(rows)
        return
    cells = reports.table(rows)
    where = f"at {', '.join(f'{b:g}' for b in budget)} of the full run's compute" if budget else "at equal compute"
    table = Table(title=f"version {version} {where}; target: 99% of the baseline's best accuracy")
    for i, header in enumerate(cells[0]):
        table.add_column(header, no_wrap=not i, justify="left" if not i else "right")
    for row in cells:
        table.add_row(*row.values())
    out.print(table)
    tracking = load_settings().tracking
    where = (
        redact(tracking) if tracking.startswith(("http://", "https://")) else "`make ui`, then http://127.0.0.1:5000"
    )
    out.print(f"Compare the runs in the MLflow UI: {where}")


@app.command()
def stage(
    name: str = typer.Argument(..., help="prepare, score, baseline, select, train, method, evaluate or report."),
    item: str | None = typer.Argument(None, help="The method, for the `method` stage."),
):
    """Run one stage of the DVC pipeline from the project root (dvc.yaml calls these; `dvc repro` runs them)."""
    from curation.stages import run_stage

    with user_errors():
        run_stage(name, item)


@app.command()
def serve(
    version: str = typer.Option("mnist1d", help="Version the scheduled flows work on."),
    work_pool: str | None = typer.Option(
        None,
        help="Register the deployments in this process work pool "
        "(created if missing) and return; `prefect worker start "
        "--pool NAME` runs them. Default: run them in this process.",
    ),
):
    """Register the deployments (schedules, the retrain trigger) with the Prefect server and run their flows
    until Ctrl-C, or leave them to the workers of --work-pool."""
    import os

    with user_errors():
        if not os.environ.get("PREFECT_API_URL"):
            raise CurationError(
                "PREFECT_API_URL is not set: there is no Prefect server to register with",
                "start one with `make ui` and export PREFECT_API_URL=http://127.0.0.1:4200/api",
            )
        if work_pool is None:
            from flows.deployments import serve_all

            serve_all(version)
            return
        from flows.deployments import deploy_all

        ids = deploy_all(version, work_pool)
    out.print(
        f"[green]registered[/] {len(ids)} deployments in work pool {work_pool}; run them with "
        f"`prefect worker start --pool {work_pool}`",
        soft_wrap=True,
    )


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
def stack(
    pg_url: str | None = typer.Option(
        None,
        help="A running PostgreSQL (postgresql+psycopg://user@host/db): the "
        "catalog; MLflow's store goes to database <db>_mlflow. "
        "Default: CURATION_CATALOG_URL.",
    ),
    host: str = typer.Option("127.0.0.1", help="Address every server binds (127.0.0.1 keeps them local)."),
    mlflow_port: int = typer.Option(5000, help="MLflow server port."),
    prefect_port: int = typer.Option(4200, help="Prefect server port."),
    dask_port: int = typer.Option(8786, help="Dask scheduler port."),
    dask_workers: int = typer.Option(2, min=0, help="Dask worker processes."),
    env_file: Path | None = typer.Option(None, help="Also write the environment (password included) here."),
):
    """Start MLflow, Prefect (server, deployments, a process worker) and Dask (scheduler, workers) as separate
    processes on this machine; print what to export; Ctrl-C stops them all."""
    from curation import stack as services

    with user_errors():
        settings = load_settings()
        url = pg_url or settings.catalog_url
        if not url:
            raise CurationError(
                "no PostgreSQL to use: --pg-url is not given and CURATION_CATALOG_URL is not set",
                "give --pg-url postgresql+psycopg://user@127.0.0.1:5432/curation",
            )
        services.run(settings, url, host, services.Ports(mlflow_port, prefect_port, dask_port), dask_workers, env_file)


@app.command(cls=ArchitecturesInHelp)
def retrain(
    dataset: str = typer.Argument(..., help="Data set whose chunks (versions) the lineage follows."),
    lineage: str | None = typer.Option(
        None, help="Lineage name (default: the mode); each lineage keeps its own champion and consumed chunks."
    ),
    mode: Mode = typer.Option(
        Mode.proactive, help="proactive steps, full (retrain from scratch) or periodic (full, every --every chunks)."
    ),
    new_per_batch: int | None = typer.Option(
        None, "--new-per-batch", "-t", help="New samples per batch, t (default: 3/4 of it; the rest from history)."
    ),
    strategy: Strategy = typer.Option(
        Strategy.uniform, help="History sampling: uniform, the last --window chunks, or recent chunks favoured (time)."
    ),
    window: int = typer.Option(3, help="Chunks of history for --strategy window."),
    passes: int = typer.Option(
        8, help="Passes over the new chunks per proactive step (reactive: the budget per step)."
    ),
    policy: Policy = typer.Option(
        Policy.fixed,
        help="Proactive passes: fixed (--passes at every step) or reactive (fewer "
        "on quiet steps, more right after a drift, within the same budget; "
        "less accurate than fixed on the seeds measured, see docs/continual.md).",
    ),
    quiet_passes: int | None = typer.Option(
        None, help="Reactive: passes of a step without drift (default: --passes - 1)."
    ),
    max_passes: int | None = typer.Option(
        None, help="Reactive: most passes of a step after a drift (default: twice --passes)."
    ),
    every: int = typer.Option(3, help="Periodic mode: retrain every this many chunks."),
    min_samples: int = typer.Option(1000, help="Amount trigger: new train samples that call for training."),
    rho: float = typer.Option(1e-3, help="Share of each tensor shipped per sparse update."),
    ship: Ship | None = typer.Option(
        None,
        help="batch: sparse training, an update after every training batch "
        "(proactive's default; about 1.5x the --passes of dense training "
        "match its accuracy); model: one update per promoted model.",
    ),
    arch: str | None = typer.Option(None, help="Architecture (default: from the feature shape)."),
    epochs: int | None = typer.Option(None, help="Epochs of a from-scratch training (default: the arch's)."),
    seed: int = typer.Option(0, help="Seed of initialisation and sampling."),
    device: Device = typer.Option(Device.auto, help="Where to train (auto: the GPU when one is found)."),
    status: bool = typer.Option(
        False,
        "--status",
        help="Train nothing: show the lineage's champion, consumed and waiting chunks and the replica's last update.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
):
    """Train on the chunks that landed since the last run (if a trigger fires), promote, ship a sparse update."""
    from curation.continual.proactive import ContinualConfig
    from curation.continual.retrain import retrain as run_retrain
    from curation.training.config import TrainConfig

    if status:
        return _retrain_status(dataset, lineage or str(mode), json_out)
    with user_errors():
        config = ContinualConfig.make(
            mode=mode,
            new_per_batch=new_per_batch,
            strategy=strategy,
            window=window,
            passes=passes,
            policy=policy,
            quiet_passes=quiet_passes,
            max_passes=max_passes,
            every=every,
            min_samples=min_samples,
        )
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
        if outcome.spend:
            sp = outcome.spend
            out.print(
                f"  {sp['policy']} policy: {sp['passes']} passes of a budget of {sp['budget']} "
                f"({'after a drift' if sp['drifted'] else 'quiet'}; bank {sp['bank']} -> {sp['bank_after']})",
                soft_wrap=True,
            )
        verdict = "promoted to champion" if outcome.promoted else "champion kept"
        out.print(
            f"[green]trained[/] model {outcome.model_version_id} (parent {outcome.parent_model_version_id}) on "
            f"versions {outcome.new_versions}: accuracy {outcome.accuracy:.4f} vs champion "
            f"{outcome.champion_accuracy if outcome.champion_accuracy is not None else '-'}: {verdict}",
            soft_wrap=True,
        )
    if outcome.shipped:
        d = outcome.shipped
        which = f"update {d['sequence']}" if d["updates"] == 1 else f"updates {d['first_sequence']}-{d['sequence']}"
        out.print(
            f"  shipped {which}: {d['bytes']:,} bytes "
            f"({d['bytes_ratio']:.2%} of dense per update), deployed accuracy {d['deployed_accuracy']:.4f} "
            f"vs trained {d['trained_accuracy']:.4f}",
            soft_wrap=True,
        )


def _retrain_status(dataset: str, lineage: str, json_out: bool) -> None:
    """`curation retrain DATASET --status`: where a lineage stands."""
    from curation.continual.retrain import lineage_status

    with user_errors():
        st = lineage_status(load_settings(), dataset, lineage)
    if json_out:
        emit_json(st)
        return
    grid = Table.grid(padding=(0, 2))
    c, u = st["champion"], st["last_update"]
    grid.add_row(
        "[bold]lineage[/]",
        f"{lineage} of {dataset}: {st['runs']} finished runs, {st['failed_runs']} failed, policy {st['policy'] or '-'}",
    )
    grid.add_row(
        "[bold]champion[/]",
        "none yet"
        if c is None
        else f"model {c['model_version_id']} ({c['name']} v{c['registry_version']}), accuracy {c['accuracy']:.4f} "
        f"on version {c['test_version_id']}, parent {c['parent_id'] or '-'}",
    )
    grid.add_row("[bold]consumed[/]", " ".join(map(str, st["consumed"])) or "-")
    grid.add_row("[bold]waiting[/]", " ".join(map(str, st["waiting"])) or "-")
    grid.add_row(
        "[bold]replica[/]",
        "nothing deployed"
        if st["base_model_version_id"] is None
        else f"base model {st['base_model_version_id']}, "
        + (
            "no update shipped yet"
            if u is None
            else f"last update {u['sequence']} for model {u['model_version_id']} ({u['bytes']:,} bytes, "
            f"gap {u['gap']:.3g}, {u['created_at'][:19].replace('T', ' ')})"
        ),
    )
    out.print(grid)


def main() -> None:  # pragma: no cover - console entry point
    app()
