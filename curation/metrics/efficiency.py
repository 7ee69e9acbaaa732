"""Accuracy per compute: the curve, compute- and time-to-accuracy, speedup against a baseline, AUC.

A run's curve has one point per epoch: cumulative compute (training plus selection FLOPs), cumulative
seconds, and test accuracy. Between points the accuracy is a step function (the model you hold after
spending compute c is the one from the last evaluation at or below c); before the first point it is 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from curation.errors import CurationError

DEFAULT_FRACTION = 0.99


@dataclass(frozen=True)
class Curve:
    """Accuracy against cumulative compute and time, one point per evaluation."""

    flops: np.ndarray
    seconds: np.ndarray
    accuracy: np.ndarray

    @classmethod
    def from_history(cls, history: Sequence[Mapping]) -> Curve:
        """From per-epoch records with ``flops``, ``seconds`` and ``accuracy`` (the trainer's history)."""
        if not history:
            raise CurationError("the run has no evaluated epochs", "train for at least one epoch")
        return cls(*(np.array([float(r[key]) for r in history]) for key in ("flops", "seconds", "accuracy")))

    @property
    def best(self) -> float:
        return float(self.accuracy.max())


def target_accuracy(baseline: Curve, fraction: float = DEFAULT_FRACTION) -> float:
    """The target a method must reach: ``fraction`` of the baseline's best accuracy."""
    return fraction * baseline.best


def _first_reaching(curve: Curve, target: float) -> int | None:
    hits = np.flatnonzero(curve.accuracy >= target)
    return int(hits[0]) if hits.size else None


def compute_to_accuracy(curve: Curve, target: float) -> float | None:
    """Cumulative FLOPs at the first evaluation reaching ``target``; None if never reached."""
    i = _first_reaching(curve, target)
    return None if i is None else float(curve.flops[i])


def time_to_accuracy(curve: Curve, target: float) -> float | None:
    """Cumulative seconds at the first evaluation reaching ``target``; None if never reached."""
    i = _first_reaching(curve, target)
    return None if i is None else float(curve.seconds[i])


def speedup(baseline: Curve, method: Curve, target: float, by: str = "flops") -> float | None:
    """Baseline's cost to ``target`` over the method's (``by`` 'flops' or 'seconds'); None if either misses it."""
    cost = compute_to_accuracy if by == "flops" else time_to_accuracy
    base, ours = cost(baseline, target), cost(method, target)
    if base is None or ours is None or ours <= 0:
        return None
    return base / ours


def accuracy_per_pflop(curve: Curve) -> float:
    """Best accuracy divided by the run's total compute in PFLOPs (10^15 FLOPs)."""
    total = float(curve.flops[-1])
    return curve.best / (total / 1e15) if total > 0 else float("nan")


def auc_log_compute(curve: Curve, lo: float | None = None, hi: float | None = None) -> float:
    """Mean accuracy over log10(compute) in [lo, hi] (default: the curve's own range), in [0, 1].

    Accuracy is the step function described in the module docstring; past the last point it stays at
    the final accuracy, so runs of different length compare over a shared range.
    """
    lo = float(curve.flops[0]) if lo is None else lo
    hi = float(curve.flops[-1]) if hi is None else hi
    if lo <= 0 or hi < lo or curve.flops[0] <= 0:
        raise CurationError(f"bad compute range [{lo}, {hi}] for the AUC", "give 0 < lo <= hi and a run with compute")
    x, a, b = np.log10(curve.flops), np.log10(lo), np.log10(hi)
    if b == a:
        return float(_accuracy_at(curve, x, np.array([a]))[0])
    edges = np.unique(np.clip(np.concatenate([[a], x, [b]]), a, b))
    return float((_accuracy_at(curve, x, edges[:-1]) * np.diff(edges)).sum() / (b - a))


def _accuracy_at(curve: Curve, log_flops: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The step function at the given log10-compute points."""
    i = np.searchsorted(log_flops, points, side="right") - 1
    return np.where(i >= 0, curve.accuracy[np.maximum(i, 0)], 0.0)


def summarize(curve: Curve, baseline: Curve | None = None, fraction: float = DEFAULT_FRACTION) -> dict:
    """Every summary of one run; with a baseline, target, costs to reach it and speedups too."""
    out = {
        "best_accuracy": curve.best,
        "final_accuracy": float(curve.accuracy[-1]),
        "total_flops": float(curve.flops[-1]),
        "total_seconds": float(curve.seconds[-1]),
        "accuracy_per_pflop": accuracy_per_pflop(curve),
        "auc_log_compute": auc_log_compute(curve),
    }
    if baseline is not None:
        target = target_accuracy(baseline, fraction)
        lo = min(curve.flops[0], baseline.flops[0])
        hi = max(curve.flops[-1], baseline.flops[-1])
        out |= {
            "target_accuracy": target,
            "compute_to_target": compute_to_accuracy(curve, target),
            "time_to_target": time_to_accuracy(curve, target),
            "speedup_compute": speedup(baseline, curve, target, "flops"),
            "speedup_time": speedup(baseline, curve, target, "seconds"),
            "auc_log_compute_shared": auc_log_compute(curve, lo, hi),
            "baseline_auc_log_compute_shared": auc_log_compute(baseline, lo, hi),
        }
    return out


def plot(curves: Mapping[str, Curve], target: float | None = None):
    """A matplotlib Figure of accuracy against cumulative compute (log x), one line per run (Agg, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, c in curves.items():
        ax.step(c.flops, c.accuracy, where="post", marker="o", markersize=3, label=name)
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("cumulative compute (FLOPs, training + selection)")
    ax.set_ylabel("test accuracy")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig
