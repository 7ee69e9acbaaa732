"""The stages of dvc.yaml (prepare, score, baseline, select, train, method, evaluate, report): thin glue.

Every stage reads params.yaml (validated whole: an unknown key or a bad value is a one-line error
before anything is written) and writes one folder under ``pipeline/``, the stage's DVC output: its
JSON record and whatever the library wrote there (the data set's Parquet, the score set, the plan).
Stages run with DVC tracking off, since ``dvc add`` inside ``dvc repro`` would wait on DVC's own lock;
the outputs are what DVC tracks. Records of data, scores and plans hold content (hashes, parameters),
never catalog ids or times, so a stage that re-runs on the same inputs writes the same bytes and the
stages after it stay cached; the next stage finds the catalog rows by that content. Training records
name their catalog and MLflow runs.

Every method runs at the full-data run's compute (``metrics.ledger.equal_compute_epochs``): a method that trains on a
fraction r of the data per epoch gets ceil(E / r) epochs; an online method (registered as such: Selective-Backprop
with beta = 1/r - 1, so about r of each candidate batch is backpropagated; InfoBatch, which picks its own share)
gets the epochs whose expected cost matches.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from curation.choices import Device
from curation.config import Settings, load_settings
from curation.errors import CurationError
from curation.files import write_atomic
from curation.selection.base import make_selector

PARAMS = Path("params.yaml")
OUT = Path("pipeline")
STAGES = ("prepare", "score", "baseline", "select", "train", "method", "evaluate", "report")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=True)


class DataParams(_Section):
    source: Literal["mnist1d", "digits"]
    samples: int = Field(ge=10)  # mnist1d: 5000 is the published 4000 train / 1000 test split


class ScoreParams(_Section):
    model: str
    epochs: int = Field(ge=1)


class SelectParams(_Section):
    method: str
    ratio: float = Field(gt=0, le=1)  # per-epoch share of the train split (its meaning per method: at_ratio)
    params: dict = {}


class TrainParams(_Section):
    model: str
    epochs: int = Field(ge=1)  # of the full-data run; every method gets the same compute
    device: Device


class CompareParams(_Section):
    methods: list[str]
    ratio: float = Field(gt=0, le=1)


class Params(_Section):
    seed: int = Field(ge=0)
    data: DataParams
    score: ScoreParams
    select: SelectParams
    train: TrainParams
    compare: CompareParams


def load_params(path: Path = PARAMS) -> Params:
    """params.yaml, checked whole: one line naming the first bad key."""
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CurationError(f"{path} does not exist", "run the stage from the project root, next to dvc.yaml") from None
    except yaml.YAMLError as exc:
        raise CurationError(f"{path} is not valid YAML ({str(exc).splitlines()[0]})", "fix its syntax") from None
    try:
        params = Params.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        errors = exc.errors()
        e = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])  # a typo names the bad key
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        problem = (
            "unknown key"
            if e["type"] == "extra_forbidden"
            else "missing key"
            if e["type"] == "missing"
            else f"bad value for ({e['msg']})"
        )
        raise CurationError(
            f"{path}: {problem} {key!r}", "see params.yaml's comments for the keys and their ranges"
        ) from None
    from models import get

    checks = [
        ("score.model", lambda: get(params.score.model)),
        ("train.model", lambda: get(params.train.model)),
        (
            "select",
            lambda: make_selector(
                params.select.method,
                **method_params(params.select.method, params.select.ratio, params.seed, params.select.params),
            ),
        ),
    ]
    checks += [
        (
            "compare.methods",
            lambda name=name: make_selector(name, **method_params(name, params.compare.ratio, params.seed)),
        )
        for name in params.compare.methods
    ]
    for key, check in checks:
        try:
            check()
        except CurationError as exc:
            raise CurationError(f"{path}: {key!r}: {exc.problem}", exc.fix) from None
    return params


def _method(name: str):
    """The registered method class, or a one-line error."""
    from curation.selection import methods  # noqa: F401 - registers the built-in selectors
    from curation.selection.base import SELECTORS

    if name not in SELECTORS:
        raise CurationError(f"unknown selection method {name!r}", f"choose one of: {', '.join(sorted(SELECTORS))}")
    return SELECTORS[name]


def method_params(name: str, ratio: float, seed: int, extra: dict | None = None) -> dict:
    """A method's parameters at a per-epoch ratio (its ``at_ratio``: soft/rs2 ``ratio``, subsets ``budget``,
    Selective-Backprop ``beta``), seeded."""
    cls = _method(name)
    return {**cls.at_ratio(ratio), **({"seed": seed} if "seed" in cls.defaults() else {}), **(extra or {})}


def uses_scores(name: str, params: dict) -> bool:
    """Whether the method reads the score set (embeddings, gradients or a score column)."""
    cls = _method(name)
    if cls.online:
        return False
    defaults = cls.defaults()
    return (
        name == "craig" or "score" in defaults or params.get("source", defaults.get("source", "features")) != "features"
    )


# -- records -------------------------------------------------------------------------------------


def write_json(path: Path, payload) -> None:
    """Stable bytes (sorted keys), written atomically."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text))


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CurationError(f"{path} is missing", "run the stages before this one: `dvc repro`") from None


def _settings(folder: Path) -> Settings:
    """This project's settings (home: the repository root, where stages run) with DVC tracking off and the
    library's files written into ``folder``."""
    return load_settings(home=Path.cwd(), dvc=False, data_dir=folder)


def _version_ref(record: dict) -> str:
    return f"{record['dataset']}@{record['content_hash']}"


# -- stages --------------------------------------------------------------------------------------


def prepare(p: Params) -> None:
    """The data set version (bytes restored if the catalog knows them but the file is gone)."""
    from curation.catalog import Catalog
    from curation.data import sources
    from curation.data.store import publish
    from curation.data.versions import register, stage_version

    settings = _settings(OUT / "prepare")
    loaded = sources.load(p.data.source, samples=p.data.samples, seed=None if p.data.source == "mnist1d" else p.seed)
    staged = stage_version(settings, loaded)
    known = Catalog(settings.catalog).find_version(loaded.default_name, staged.content_hash)
    if known is not None and not (settings.home / known.path).exists():
        publish(staged.path, settings.home / known.path)
    info = register(settings, staged, loaded.default_name, loaded.source)
    write_json(
        OUT / "prepare" / "version.json",
        {
            k: v
            for k, v in info.to_dict().items()
            if k not in ("id", "created", "created_at", "git_rev", "parent_id", "path")
        },
    )


def score(p: Params) -> None:
    from curation.scoring.run import score_version

    settings = _settings(OUT / "score")
    info = score_version(
        settings,
        _version_ref(read_json(OUT / "prepare" / "version.json")),
        p.score.model,
        p.score.epochs,
        p.seed,
        device=p.train.device,
    )
    write_json(
        OUT / "score" / "scores.json",
        {"scorer": info.scorer, "params": info.params, "columns": info.columns, "content_hash": info.content_hash},
    )


def _select(p: Params, folder: Path, name: str, ratio: float, extra: dict) -> None:
    """Select with ``name`` (or, for an online method, record its parameters) into ``folder``."""
    params = method_params(name, ratio, p.seed, extra)
    record = {"method": name, "ratio": ratio, "online": _method(name).online}
    if record["online"]:
        make_selector(name, **params)  # checked; it is built again, seeded from the run, when it trains
        write_json(folder / "plan.json", {**record, "params": {k: v for k, v in params.items() if k != "seed"}})
        return
    from curation.selection.run import select_plan

    settings = _settings(folder)
    score_id = _score_set_id(settings) if uses_scores(name, params) else None
    info, _ = select_plan(settings, _version_ref(read_json(OUT / "prepare" / "version.json")), name, params, score_id)
    write_json(
        folder / "plan.json",
        {
            **record,
            "params": info.params,
            "budget": info.budget,
            "seed": info.seed,
            "plan_ratio": info.ratio,
            "content_hash": info.content_hash,
            "scores": None if score_id is None else read_json(OUT / "score" / "scores.json")["content_hash"],
        },
    )


def _score_set_id(settings: Settings) -> int:
    from sqlalchemy import select

    from curation.catalog import Catalog, ScoreSet

    digest = read_json(OUT / "score" / "scores.json")["content_hash"]
    with Catalog(settings.catalog).session() as s:
        found = s.scalar(select(ScoreSet.id).where(ScoreSet.content_hash == digest).order_by(ScoreSet.id.desc()))
    if found is None:
        raise CurationError(f"score set {digest} is not in this project's catalog", "re-run it: `dvc repro -f score`")
    return found


def _plan(settings: Settings, version_id: int, plan: dict):
    """The catalog's newest plan with the record's method, parameters and content."""
    from curation.selection.run import plans

    for info in reversed(plans(settings, version_id)):
        if (info.method, info.params, info.content_hash) == (plan["method"], plan["params"], plan["content_hash"]):
            return info
    raise CurationError(
        f"the {plan['method']} plan is not in this project's catalog", "re-run it: `dvc repro -f select`"
    )


def _train(p: Params, folder: Path, plan: dict | None) -> None:
    """Train the full data (``plan`` None) or a plan record at the full run's compute; write run.json."""
    from curation import compare
    from curation.training.config import TrainConfig

    settings = _settings(folder)
    config = TrainConfig.make(arch=p.train.model, epochs=p.train.epochs, seed=p.seed, device=p.train.device)
    setup = compare.setup(settings, _version_ref(read_json(OUT / "prepare" / "version.json")), [], config)
    info, config = setup.info, setup.config
    if plan is None:
        row = compare.train_row(settings, info.id, config)
    else:
        baseline = read_json(OUT / "baseline" / "run.json")["run_id"]
        short = {k: v for k, v in method_params(plan["method"], plan["ratio"], 0).items() if k != "seed"}
        if plan["online"]:  # no plan: the method decides inside the Trainer
            row = compare.train_row(settings, info.id, config, plan["method"], plan["params"], None, baseline)
        else:
            row = compare.train_row(
                settings, info.id, config, plan["method"], short, _plan(settings, info.id, plan), baseline
            )
    write_json(folder / "run.json", row.to_dict())


def baseline(p: Params) -> None:
    _train(p, OUT / "baseline", None)


def select_stage(p: Params) -> None:
    _select(p, OUT / "select", p.select.method, p.select.ratio, p.select.params)


def train(p: Params) -> None:
    _train(p, OUT / "train", read_json(OUT / "select" / "plan.json"))


def method(p: Params, name: str) -> None:
    """One of ``compare.methods``: select and train it at ``compare.ratio`` (the foreach stage)."""
    if name not in p.compare.methods:
        raise CurationError(f"{name!r} is not in compare.methods of params.yaml", "add it there, then `dvc repro`")
    folder = OUT / "methods" / name
    _select(p, folder, name, p.compare.ratio, {})
    _train(p, folder, read_json(folder / "plan.json"))


def comparison(p: Params) -> dict[str, dict]:
    """The comparison rows by name: full, select (select.method), then each of compare.methods."""
    runs = {"full": OUT / "baseline", "select": OUT / "train"}
    runs |= {name: OUT / "methods" / name for name in p.compare.methods}
    return {name: read_json(folder / "run.json") for name, folder in runs.items()}


def evaluate(p: Params) -> None:
    """DVC metrics (metrics.json) and plot data (accuracy vs compute, coverage per epoch)."""
    from curation.reports import label

    rows = comparison(p)
    metrics = {
        name: {
            "best_accuracy": r["best_accuracy"],
            "final_accuracy": r["history"][-1]["accuracy"],
            "coverage": r["history"][-1]["coverage"],
            "gflops": r["total_flops"] / 1e9,
            **({} if name == "full" else {"speedup_compute": r.get("speedup_compute")}),
        }
        for name, r in rows.items()
    }
    write_json(OUT / "evaluate" / "metrics.json", metrics)
    write_json(
        OUT / "evaluate" / "curves.json",
        [
            {
                "method": label(r) + (" (select)" if name == "select" else ""),
                "epoch": h["epoch"],
                "gflops": round(h["flops"] / 1e9, 4),
                "accuracy": h["accuracy"],
                "coverage": h["coverage"],
            }
            for name, r in rows.items()
            for h in r["history"]
        ],
    )


def report(p: Params) -> None:
    """The comparison's charts (curation.reports), its table (markdown) and its rows."""
    from curation.reports import markdown, render, table

    rows = list(comparison(p).values())
    render(rows, OUT / "report")
    write_json(OUT / "report" / "rows.json", rows)
    (OUT / "report" / "table.md").write_text(markdown(table(rows)))


def run_stage(name: str, item: str | None = None) -> None:
    """Run one stage from the project root (where dvc.yaml and params.yaml are)."""
    if name not in STAGES:
        raise CurationError(f"unknown stage {name!r}", f"choose one of: {', '.join(STAGES)}")
    if (name == "method") != (item is not None):
        raise CurationError(
            f"stage {name!r} {'needs a method name' if name == 'method' else 'takes no argument'}",
            "see dvc.yaml for how each stage is called",
        )
    params = load_params()
    if name == "method":
        method(params, item)
        return
    {
        "prepare": prepare,
        "score": score,
        "baseline": baseline,
        "select": select_stage,
        "train": train,
        "evaluate": evaluate,
        "report": report,
    }[name](params)
