"""When to retrain: on enough new data, after enough time, on drift, or on an accuracy drop.

Each trigger returns a Decision with its reason; the retrain flow logs every decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Decision:
    fire: bool
    trigger: str
    reason: str


def amount(new_samples: int, threshold: int = 1000) -> Decision:
    fire = new_samples >= threshold
    return Decision(fire, "amount", f"{new_samples} new samples {'>=' if fire else '<'} threshold {threshold}")


def elapsed(seconds_since_training: float | None, every_s: float = 3600.0) -> Decision:
    if seconds_since_training is None:
        return Decision(True, "time", "never trained")
    fire = seconds_since_training >= every_s
    return Decision(
        fire, "time", f"{seconds_since_training:.0f} s since the last training {'>=' if fire else '<'} {every_s:.0f} s"
    )


def drift(reference: np.ndarray, newest: np.ndarray, alpha: float = 0.01) -> Decision:
    """Per-feature two-sample Kolmogorov-Smirnov tests with a Bonferroni correction."""
    reference, newest = np.asarray(reference, float), np.asarray(newest, float)
    if len(reference) < 2 or len(newest) < 2:
        return Decision(False, "drift", "too few samples to test for drift")
    p_values = np.array([stats.ks_2samp(reference[:, j], newest[:, j]).pvalue for j in range(reference.shape[1])])
    worst = int(np.argmin(p_values))
    corrected = min(1.0, float(p_values[worst]) * len(p_values))
    fire = corrected < alpha
    return Decision(
        fire,
        "drift",
        f"KS test on feature {worst}: corrected p = {corrected:.2g} {'<' if fire else '>='} alpha {alpha}",
    )


def accuracy_drop(
    deployed_accuracy: float, current_accuracy: float, n_test: int, max_drop: float = 0.02, z: float = 2.0
) -> Decision:
    """Fire when accuracy on the newest test chunk fell by more than ``max_drop`` beyond sampling noise."""
    noise = z * math.sqrt(max(current_accuracy * (1 - current_accuracy), 1e-12) / max(n_test, 1))
    drop = deployed_accuracy - current_accuracy
    fire = drop > max_drop + noise
    return Decision(
        fire,
        "accuracy",
        f"accuracy {deployed_accuracy:.4f} -> {current_accuracy:.4f} on {n_test} "
        f"samples (drop {drop:+.4f}, allowed {max_drop:.3f} + noise {noise:.4f})",
    )
