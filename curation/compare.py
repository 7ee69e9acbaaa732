"""Compare selection methods against the full-data baseline on one version, at equal compute.

Each method's plan is selected, then trained with the baseline's configuration for as many epochs
as give it the baseline's number of training samples (``equal_compute_epochs``: a 30% plan trains
ceil(E / 0.3) epochs), so every run spends about the same compute; the runs are nested under one
MLflow parent run, which also gets the table and the report's PNGs (``publish``). The summaries (best
accuracy, compute, time, speedup to 99% of the baseline's best) come from the Trainer's ledger,
selection cost included. Each row also carries the run's evaluation curve (compute, time, accuracy,
coverage per epoch) and the plan's occupancy histogram, which ``curation.reports`` draws.

Online methods (Selective-Backprop, InfoBatch: ``online`` in the registry) have no plan: they train on
every sample's candidates and decide inside the Trainer, for the epochs their expected cost allows.
With ``budgets`` every method instead runs at each budget (a share of the full run's backward samples,
its learning rate fitted to it: ``TrainConfig.budget``), beside ``full-shortened``: every sample, as
many epochs as the budget takes, the same fitted schedule (docs/papers.md section 6).

The loop is ``run``: ``setup``, the baseline, then for each budget and method a select step (none for
online methods) and a train step (``selection.run.select_plan``, ``train_row``). ``compare`` runs it as
it is; the Prefect flow passes the same steps wrapped as cached tasks; the DVC stages call the steps,
one stage each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from curation import reports
from curation.config import Settings
from curation.data.versions import VersionInfo, open_version
from curation.metrics.ledger import equal_compute_epochs
from curation.selection.base import make_selector
from curation.selection.params import parse_pairs
from curation.selection.plans import FullPlan, Plan
from curation.selection.run import PlanInfo, load_plan, select_plan
from curation.selection.sampling import SampledPlan
from curation.tracking import ParentRun, Tracker
from curation.training.config import TrainConfig
from curation.training.run import train_version


@dataclass
class Row:
    method: str
    params: dict
    run_id: int
    epochs: int
    summary: dict
    ledger: dict
    ratio: float = 1.0
    train_samples: int = 0
    plan_kind: str = "full"
    history: list[dict] = field(default_factory=list)
    occupancy: list[int] = field(default_factory=list)
    budget: float | None = None  # the run's compute budget (share of the full run's backward samples)

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "params": self.params,
            "run_id": self.run_id,
            "epochs": self.epochs,
            **self.summary,
            "backward_samples": self.ledger["backward_samples"],
            "selection_seconds": self.ledger["selection_seconds"],
            "ratio": self.ratio,
            "train_samples": self.train_samples,
            "plan_kind": self.plan_kind,
            "history": self.history,
            "occupancy": self.occupancy,
            "budget": self.budget,
        }


CURVE_KEYS = ("epoch", "flops", "seconds", "accuracy", "coverage")
TABLE_COLUMNS = (
    "method",
    "params",
    "budget",
    "run_id",
    "epochs",
    "best_accuracy",
    "total_flops",
    "total_seconds",
    "backward_samples",
    "target_accuracy",
    "speedup_compute",
    "speedup_time",
)
REPORTS_DIR = Path(".curation") / "reports"  # under the project home: one folder per comparison (parent run id)


def curve(history: list[dict]) -> list[dict]:
    """The per-evaluation points of a run's history that the reports draw."""
    return [{k: r[k] for k in CURVE_KEYS} for r in history]


def plan_kind(plan: Plan, epochs: int) -> str:
    """'full', 'soft'/'rs2' (generated), 'static' (the same subset every epoch) or 'other': which theory applies."""
    if isinstance(plan, FullPlan):
        return "full"
    if isinstance(plan, SampledPlan):
        return plan.kind
    first = np.sort(plan.ids(0))
    return "static" if all(np.array_equal(first, np.sort(plan.ids(e))) for e in range(1, epochs)) else "other"


def parse_method(text: str) -> tuple[str, dict]:
    """'soft:ratio=0.3' -> ('soft', {'ratio': 0.3}); values parsed as YAML scalars."""
    name, _, rest = text.partition(":")
    return name.strip(), parse_pairs(filter(None, rest.split(",")), f"method {text!r}", "soft:ratio=0.3")


def check_methods(methods: list[str]) -> list[tuple[str, dict]]:
    """Every method and its parameters parsed and checked (a one-line error) before anything trains."""
    parsed = [parse_method(m) for m in methods]
    for name, params in parsed:
        make_selector(name, **params)
    return parsed


def train_row(
    settings: Settings,
    version_id: int,
    config: TrainConfig,
    method: str = "full",
    params: dict | None = None,
    plan: PlanInfo | None = None,
    baseline: int | None = None,
) -> Row:
    """The train step: the full data (``method`` "full"), an online method on every sample, or ``plan``; each
    for the epochs that match the full run's compute, or with ``config.budget`` until the budget is spent (the
    full data then is ``full-shortened``)."""
    info, _ = open_version(settings, version_id)
    n = int((info.splits or {}).get("train", 0))
    budget = config.budget
    if method == "full":
        outcome = train_version(settings, version_id, config, baseline=baseline if budget else None)
        return Row(
            "full" if budget is None else "full-shortened",
            {},
            outcome.run_id,
            len(outcome.history),
            outcome.summary,
            outcome.ledger,
            1.0,
            n,
            "full" if budget is None else "other",
            curve(outcome.history),
            outcome.occupancy,
            budget,
        )
    if plan is None:
        return _train_online(settings, version_id, config, method, params or {}, baseline, n)
    epochs = equal_compute_epochs(config.epochs, plan.ratio) if plan.ratio and budget is None else config.epochs
    outcome = train_version(
        settings, version_id, config.model_copy(update={"epochs": epochs}), plan.id, baseline=baseline
    )
    ran = len(outcome.history)
    return Row(
        method,
        params or {},
        outcome.run_id,
        ran,
        outcome.summary,
        outcome.ledger,
        plan.ratio or 1.0,
        n,
        plan_kind(load_plan(settings, plan.id), ran) if budget is None else "other",
        curve(outcome.history),
        outcome.occupancy,
        budget,
    )


def _train_online(
    settings: Settings, version_id: int, config: TrainConfig, method: str, params: dict, baseline: int | None, n: int
) -> Row:
    """An online method on every sample: for the epochs its expected cost matches the full run's compute in,
    or until ``config.budget`` is spent; candidate batches as the method asks, training batches of
    ``config.batch_size``, seeded from the run's seed unless ``params`` give one."""
    selector = make_selector(method, **params)
    defaults = type(selector).defaults()
    selector.set_params(
        **{
            k: v
            for k, v in (("seed", config.seed), ("batch_size", config.batch_size))
            if k in defaults and k not in params
        }
    )
    epochs = config.epochs if config.budget else selector.equal_compute_epochs(config.epochs)
    run = config.model_copy(
        update={"epochs": epochs, "candidate_batch_size": selector.candidate_batch_size(config.batch_size)}
    )
    outcome = train_version(settings, version_id, run, baseline=baseline, selector=selector)
    return Row(
        method,
        params,
        outcome.run_id,
        len(outcome.history),
        outcome.summary,
        outcome.ledger,
        outcome.ledger["backward_samples"] / max(1, n * len(outcome.history)),
        n,
        "other",
        curve(outcome.history),
        outcome.occupancy,
        config.budget,
    )


def is_online(name: str) -> bool:
    """Whether a registered method decides inside the Trainer (no plan to select first)."""
    from curation.selection import methods  # noqa: F401 - registers the built-in selectors
    from curation.selection.base import SELECTORS

    return SELECTORS[name].online


@contextmanager
def parent_run(settings: Settings, info: VersionInfo, methods: list[str], config: TrainConfig) -> Iterator[ParentRun]:
    """The comparison's MLflow parent run: every training run started inside the block is nested under it."""
    with Tracker(settings, experiment=info.dataset).parent(
        f"compare-{info.dataset}-v{info.id}", tags={"curation.version": info.ref, "curation.kind": "compare"}
    ) as run:
        run.log_params(
            {
                "methods": "; ".join(methods),
                "arch": config.arch,
                "epochs": config.epochs,
                "seed": config.seed,
                "version_id": info.id,
            }
        )
        yield run


def table(rows: list[dict]) -> list[dict]:
    """The comparison as flat rows (no curves), for tables."""
    return [{k: row.get(k) for k in TABLE_COLUMNS} for row in rows]


def publish(settings: Settings, parent: ParentRun, rows: list[dict]) -> dict[str, Path]:
    """Draw the report (``curation.reports``) and log it with the rows to the parent run; the PNG paths."""
    paths = reports.render(rows, settings.home / REPORTS_DIR / parent.run_id)
    parent.log_dict(rows, "comparison.json")
    parent.log_dict(table(rows), "comparison_table.json")
    parent.log_files(paths, "report")
    return paths


@dataclass(frozen=True)
class Setup:
    """What every step of one comparison shares: checked methods, the version and the resolved configuration."""

    settings: Settings
    info: VersionInfo
    config: TrainConfig
    methods: list[str]  # as given ('soft:ratio=0.3')
    parsed: list[tuple[str, dict]]
    budgeted: list[TrainConfig]  # the configuration at each budget (none: every method at equal compute)


def setup(
    settings: Settings,
    ref: str | int,
    methods: list[str],
    config: TrainConfig | None = None,
    budgets: Sequence[float] = (),
) -> Setup:
    """Check every method and budget (a one-line error before anything trains) and resolve the configuration."""
    parsed = check_methods(methods)
    info, _ = open_version(settings, ref)
    config = (config or TrainConfig()).resolve(info.feature_shape)
    budgeted = [config.model_copy(update={"budget": b}) for b in budgets]
    for each in budgeted:
        TrainConfig.make(**each.model_dump())  # a bad budget is a one-line error before anything trains
    return Setup(settings, info, config, list(methods), parsed, budgeted)


@dataclass
class Outcome:
    rows: list[Row]
    parent_run_id: str  # MLflow's, holding the table and the report
    report: dict[str, Path]  # chart name -> PNG


Select = Callable[[str, dict], PlanInfo]  # (method, params) -> its plan
Train = Callable[[str, dict, PlanInfo | None, int | None, TrainConfig], Row]  # (method, params, plan, baseline
#                                                                               run, configuration) -> row


def run(setup: Setup, baseline: int | None = None, select: Select | None = None, train: Train | None = None) -> Outcome:
    """The comparison loop: the full-data baseline (unless ``baseline`` names a finished run), then each method
    selected (online methods: not) and trained at equal compute, or at each budget beside ``full-shortened``, as
    nested MLflow runs under one parent that gets the table and the report. ``select`` and ``train`` default to
    ``select_plan`` and ``train_row``; the flow passes them as tasks."""
    select = select or (lambda method, params: select_plan(setup.settings, setup.info.id, method, params)[0])
    train = train or (
        lambda method, params, plan, base, config: train_row(
            setup.settings, setup.info.id, config, method, params, plan, base
        )
    )
    rows = []
    with parent_run(setup.settings, setup.info, setup.methods, setup.config) as parent:
        if baseline is None:
            rows.append(train("full", {}, None, None, setup.config))
            baseline = rows[0].run_id
        rows += [train("full", {}, None, baseline, config) for config in setup.budgeted]
        for config in setup.budgeted or [setup.config]:
            for name, params in setup.parsed:
                plan = None if is_online(name) else select(name, params)
                rows.append(train(name, params, plan, baseline, config))
        paths = publish(setup.settings, parent, [r.to_dict() for r in rows])
    return Outcome(rows, parent.run_id, paths)


def compare(
    settings: Settings,
    ref: str | int,
    methods: list[str],
    config: TrainConfig | None = None,
    baseline: int | None = None,
    score_set: int | None = None,
    budgets: Sequence[float] = (),
) -> list[Row]:
    """``run`` with the plain steps: the baseline and every method (at each of ``budgets``), trained here and now."""
    chosen = setup(settings, ref, methods, config, budgets)
    return run(
        chosen, baseline, lambda method, params: select_plan(settings, chosen.info.id, method, params, score_set)[0]
    ).rows
