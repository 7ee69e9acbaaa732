"""How many passes over the new rows a proactive step spends: ``fixed`` or drift-reactive (``reactive``).

``fixed`` spends ``passes`` at every step. ``reactive`` keeps a pass bank within the same budget: every
step earns ``passes``; a quiet step spends ``quiet_passes`` and banks the rest, a step after a drift
spends up to ``max_passes`` from what it earns plus the bank. So over any stretch of steps it never
spends more than ``fixed`` would, and it spends it where the model is behind.

A step is "after a drift" when, before training, the KS drift trigger fires between the history and
the new rows, or the accuracy trigger fires: the model's accuracy on the new train rows (rows it has
never seen: a prequential estimate) fell from the previous step's (the previous model on the rows
that were new then). Train rows only: the test split stays out of every choice. Nothing is kept
outside the catalog: ``bank`` sums the bank from the finished steps' records (``Spend.record``) and
the last record holds the previous accuracy, so a killed step changes nothing and the rerun decides
the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from curation.continual import triggers
from curation.continual.data import StreamData
from curation.continual.proactive import ContinualConfig

SAMPLE = 1000  # rows per side of the drift and accuracy tests


@dataclass(frozen=True)
class Spend:
    """One step's decision: passes spent of the fixed budget, the bank before, and why."""

    policy: str
    passes: int
    budget: int
    bank: int  # passes saved before this step
    drifted: bool
    signals: list[dict]
    accuracy: float  # the model's accuracy on the new train rows before the step (the next step's reference)

    @property
    def bank_after(self) -> int:
        return self.bank + self.budget - self.passes

    def record(self) -> dict:
        """What a run records (its params ``passes``); ``bank`` reads it back."""
        return {**asdict(self), "bank_after": self.bank_after}


def signals(
    model: nn.Module, stream: StreamData, new: int, config: ContinualConfig, reference: float | None, seed: int = 0
) -> tuple[list[triggers.Decision], float]:
    """The KS drift and (given the previous step's accuracy ``reference``) the accuracy-drop trigger on a stream
    whose last ``new`` chunks the model has not seen; and its accuracy on them."""
    rng = np.random.default_rng(seed)
    pick = lambda rows: np.sort(rng.permutation(np.asarray(rows))[:SAMPLE])  # noqa: E731
    history, fresh = pick(np.concatenate(stream.chunk_rows[:-new])), pick(np.concatenate(stream.chunk_rows[-new:]))
    flat = lambda rows: stream.data.train.batch(rows)[0].reshape(len(rows), -1).cpu().numpy()  # noqa: E731
    now = _accuracy(model, stream, fresh)
    decisions = [triggers.drift(flat(history), flat(fresh), config.drift_alpha)]
    if reference is not None:
        decisions.append(triggers.accuracy_drop(reference, now, len(fresh), config.max_drop))
    return decisions, now


def decide(
    config: ContinualConfig, model: nn.Module, stream: StreamData, new: int, steps: Iterable[dict | None], seed: int = 0
) -> Spend:
    """The passes of a proactive step of ``model`` over the last ``new`` chunks after the finished steps whose
    ``Spend.record``s are ``steps`` (oldest first; None: a step without one)."""
    steps = [s for s in steps if s]
    decisions, accuracy = signals(model, stream, new, config, steps[-1]["accuracy"] if steps else None, seed)
    return spend(config, bank(steps), decisions, accuracy)


def spend(config: ContinualConfig, bank: int, decisions: Iterable[triggers.Decision], accuracy: float) -> Spend:
    """The passes of the next step under ``config.policy`` after these trigger decisions."""
    decisions = list(decisions)
    drifted = any(d.fire for d in decisions)
    if config.policy == "fixed":
        spent = config.passes
    elif drifted:
        spent = min(config.cap, config.passes + bank)
    else:
        spent = config.quiet
    return Spend(config.policy, spent, config.passes, bank, drifted, [asdict(d) for d in decisions], accuracy)


def bank(steps: Iterable[dict | None]) -> int:
    """The passes saved by the finished steps whose ``Spend.record``s these are (None: a step without one)."""
    return sum(s["budget"] - s["passes"] for s in steps if s)


def _accuracy(model: nn.Module, stream: StreamData, rows: np.ndarray) -> float:
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            x, y = stream.data.train.batch(rows)
            device = next(model.parameters()).device
            return float((model(x.to(device)).argmax(1) == y.to(device)).float().mean())
    finally:
        model.train(was)
