"""Compare selection methods against the full-data baseline on one version, at equal compute.

Each method's plan is selected, then trained with the baseline's configuration for as many epochs
as give it the baseline's number of training samples (a 30% plan trains 1/0.3 times the epochs),
so every run spends about the same compute. The summaries (best accuracy, compute, time, speedup
to 99% of the baseline's best) come from the Trainer's ledger, selection cost included. Each row
also carries the run's evaluation curve (compute, time, accuracy, coverage per epoch) and the plan's
occupancy histogram, which ``curation.reports`` draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from curation.config import Settings
from curation.data.versions import open_version
from curation.errors import CurationError
from curation.selection.base import make_selector
from curation.selection.plans import FullPlan, Plan, StaticPlan
from curation.selection.sampling import SampledPlan
from curation.selection.run import select_plan
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

    def to_dict(self) -> dict:
        return {"method": self.method, "params": self.params, "run_id": self.run_id, "epochs": self.epochs,
                **self.summary,
                "backward_samples": self.ledger["backward_samples"],
                "selection_seconds": self.ledger["selection_seconds"],
                "ratio": self.ratio, "train_samples": self.train_samples, "plan_kind": self.plan_kind,
                "history": self.history, "occupancy": self.occupancy}


CURVE_KEYS = ("epoch", "flops", "seconds", "accuracy", "coverage")


def curve(history: list[dict]) -> list[dict]:
    """The per-evaluation points of a run's history that the reports draw."""
    return [{k: r[k] for k in CURVE_KEYS} for r in history]


def plan_kind(plan: Plan) -> str:
    """'full', 'soft'/'rs2' (generated), 'static' (a fixed subset) or 'other': which theory applies."""
    if isinstance(plan, FullPlan):
        return "full"
    if isinstance(plan, SampledPlan):
        return plan.kind
    return "static" if isinstance(plan, StaticPlan) else "other"


def occupancy(plan: Plan, epochs: int, n: int) -> list[int]:
    """Histogram of how many of the ``n`` train samples the plan draws 0, 1, 2, ... times in ``epochs`` epochs."""
    _, counts = np.unique(np.concatenate([plan.ids(e) for e in range(epochs)]), return_counts=True)
    hist = np.bincount(counts, minlength=epochs + 1)
    hist[0] = n - len(counts)
    return hist.tolist()


def parse_method(text: str) -> tuple[str, dict]:
    """'soft:ratio=0.3' -> ('soft', {'ratio': 0.3}); values parsed as YAML scalars."""
    import yaml

    name, _, rest = text.partition(":")
    params = {}
    for pair in filter(None, rest.split(",")):
        key, sep, value = pair.partition("=")
        if not sep:
            raise CurationError(f"method option {pair!r} in {text!r} is not key=value", "write e.g. soft:ratio=0.3")
        params[key.strip()] = yaml.safe_load(value)
    return name.strip(), params


def compare(settings: Settings, ref: str | int, methods: list[str], config: TrainConfig | None = None,
            baseline: int | None = None, score_set: int | None = None) -> list[Row]:
    """Train the full-data baseline (unless ``baseline`` names a finished run), then each method."""
    parsed = [parse_method(m) for m in methods]
    for name, params in parsed:  # every method and its parameters are checked before any training
        make_selector(name, **params)
    info, _ = open_version(settings, ref)
    config = (config or TrainConfig()).resolve(info.feature_shape)
    n = int((info.splits or {}).get("train", 0))
    rows = []
    if baseline is None:
        full = train_version(settings, ref, config)
        baseline = full.run_id
        rows.append(Row("full", {}, full.run_id, config.epochs, full.summary, full.ledger, 1.0, n, "full",
                        curve(full.history), [0] * config.epochs + [n]))
    for name, params in parsed:
        plan, selector = select_plan(settings, ref, name, params, score_set)
        epochs = max(1, round(config.epochs / plan.ratio)) if plan.ratio else config.epochs
        outcome = train_version(settings, ref, config.model_copy(update={"epochs": epochs}), plan.id,
                                baseline=baseline)
        rows.append(Row(name, params, outcome.run_id, epochs, outcome.summary, outcome.ledger, plan.ratio or 1.0, n,
                        plan_kind(selector.plan_), curve(outcome.history), occupancy(selector.plan_, epochs, n)))
    return rows
