"""Proactive training (Prapas et al. 2021) and its baselines, in one code path.

``train_step`` brings a model up to date with a stream whose newest chunks are new:

- ``proactive``: continue from the deployed model on mini-batches of t new + (B - t) history rows
  (``mixed_batches``: uniform, window or time-based history), ``passes`` times over the new rows;
- ``full``: retrain from scratch on every chunk seen so far, ``epochs`` epochs (the baseline);
- ``periodic``: the same full retraining, but only every ``every`` chunks (``ContinualConfig.due``).

The first model of a stream is always trained from scratch. Every sample goes into the Trainer's
ComputeLedger; the result is evaluated on the newest chunk's test split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import nn

from curation.choices import Mode, Policy, Strategy
from curation.continual.data import StreamData
from curation.continual.mixing import mixed_batches
from curation.errors import CurationError
from curation.metrics.ledger import ComputeLedger
from curation.selection.plans import FullPlan
from curation.training.config import TrainConfig
from curation.training.trainer import Callback, Trainer
from models import ModelSpec, build

NEW_SHARE = 0.75  # t / B by default (with 8 passes): tuned on stream seeds 20-23, none of the reported ones


class ContinualConfig(BaseModel):
    """How a lineage keeps its model current; the fields are its MLflow params."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=True)

    mode: Mode = Mode.proactive
    new_per_batch: int | None = Field(None, ge=1, description="t: new rows in each batch of B (default: 3/4 of B)")
    batch_size: int | None = Field(None, ge=1, description="B of a proactive batch (default: the training batch size)")
    strategy: Strategy = Strategy.uniform
    window: int = Field(3, ge=1, description="chunks of history the window strategy draws from")
    passes: int = Field(
        8, ge=1, description="passes over the new rows per proactive step (the reactive policy's budget per step)"
    )
    policy: Policy = Field(
        Policy.fixed,
        description="fixed: passes at every step; reactive: fewer on quiet steps, more after a drift, same budget",
    )
    quiet_passes: int | None = Field(
        None, ge=1, description="reactive: passes of a step without drift (default: passes - 1, at least 1)"
    )
    max_passes: int | None = Field(
        None, ge=1, description="reactive: the most passes of a step after a drift (default: twice passes)"
    )
    lr_scale: float = Field(1.0, gt=0, le=1, description="proactive steps train at this share of the training lr")
    every: int = Field(3, ge=1, description="periodic mode: retrain every this many chunks")
    min_samples: int = Field(1000, ge=1, description="amount trigger: new train samples that call for training")
    every_s: float = Field(86400.0, gt=0, description="time trigger: seconds since the last training")
    drift_alpha: float = Field(0.01, gt=0, lt=1, description="drift trigger: KS test level")
    max_drop: float = Field(0.02, ge=0, lt=1, description="accuracy trigger: tolerated drop of the champion")

    @model_validator(mode="after")
    def _passes_in_order(self) -> ContinualConfig:
        if not self.quiet <= self.passes <= self.cap:
            raise ValueError(f"need quiet_passes <= passes <= max_passes, got {self.quiet}, {self.passes}, {self.cap}")
        return self

    @property
    def quiet(self) -> int:
        """The reactive policy's passes on a quiet step."""
        return self.quiet_passes or max(1, self.passes - 1)

    @property
    def cap(self) -> int:
        """The reactive policy's most passes on a step after a drift."""
        return self.max_passes or 2 * self.passes

    @classmethod
    def make(cls, **values) -> ContinualConfig:
        """Validate user input; a bad value becomes a one-line CurationError."""
        try:
            return cls(**values)
        except ValidationError as exc:
            e = exc.errors()[0]
            where = ".".join(str(p) for p in e["loc"]) or "max_passes"  # the only check across fields
            raise CurationError(
                f"bad retraining setting {where!r}: {e['msg']}", f"fix --{where.replace('_', '-')}"
            ) from None

    def resolve(self, batch_size: int) -> ContinualConfig:
        """This config with B (default ``batch_size``, the training batch size) and t (default ``NEW_SHARE`` of B)
        filled in: what a run records and trains with."""
        b = self.batch_size or batch_size
        t = self.new_per_batch or max(1, int(NEW_SHARE * b))
        return self.model_copy(update={"batch_size": b, "new_per_batch": t})

    def due(self, new_chunks: int) -> bool:
        """Whether this many untrained chunks call for a step (periodic waits for ``every``)."""
        return new_chunks >= (self.every if self.mode == "periodic" else 1)


@dataclass
class StepResult:
    model: nn.Module
    from_scratch: bool
    accuracy: float  # on the newest chunk's test split
    ledger: ComputeLedger
    optimizer: dict  # the optimizer's state, for the next proactive step to continue with


def evaluate(model: nn.Module, stream: StreamData, train: TrainConfig) -> float:
    """Accuracy of ``model`` on the newest chunk's test split."""
    return Trainer(model, stream.data, train).evaluate()[0]


def train_step(
    stream: StreamData,
    new: int,
    model: nn.Module | None,
    config: ContinualConfig,
    train: TrainConfig,
    spec: ModelSpec,
    step: int = 0,
    optimizer: dict | None = None,
    callbacks: Sequence[Callback] = (),
    passes: int | None = None,
) -> StepResult:
    """Train on a stream whose last ``new`` chunks are new; ``model`` is the deployed one (None: none yet).

    ``passes``: a proactive step's passes (default ``config.passes``; the reactive policy's choice, policy.py);
    ``optimizer``: the state the deployed model's training left (a proactive step continues with it);
    ``callbacks`` hook into the Trainer's batch loop (e.g. to ship a sparse update every few batches).
    """
    if not 1 <= new <= len(stream.chunk_rows):
        raise CurationError(f"{new} new chunks of a stream of {len(stream.chunk_rows)}", "give 1..all chunks")
    train = train.resolve(stream.data.feature_shape)
    if config.mode == "proactive" and model is not None:
        trainer = _proactive(stream, new, model, config, train, step, optimizer, callbacks, passes or config.passes)
        return StepResult(trainer.model, False, trainer.evaluate()[0], trainer.ledger, trainer.optimizer.state_dict())
    torch.manual_seed(train.seed + step)
    trainer = Trainer(build(train.arch, spec), stream.data, train, callbacks=callbacks)
    trainer.fit(FullPlan(stream.data.version_id, stream.data.train.sample_ids))
    return StepResult(
        trainer.model, True, trainer.history[-1]["accuracy"], trainer.ledger, trainer.optimizer.state_dict()
    )


def _proactive(
    stream: StreamData,
    new: int,
    model: nn.Module,
    config: ContinualConfig,
    train: TrainConfig,
    step: int,
    optimizer: dict | None,
    callbacks: Sequence[Callback],
    passes: int,
) -> Trainer:
    """``passes`` passes of mixed batches over the new rows at ``lr_scale`` times the training lr,
    annealed to 0 over the step when the training schedule is cosine (a warm restart per chunk)."""
    config = config.resolve(train.batch_size)
    trainer = Trainer(model, stream.data, train, callbacks=callbacks)
    if optimizer is not None:
        trainer.optimizer.load_state_dict(optimizer)
    history, fresh = stream.chunk_rows[:-new], np.concatenate(stream.chunk_rows[-new:])
    batches = (
        rows
        for p in range(passes)
        for rows in mixed_batches(
            fresh,
            history,
            config.batch_size,
            config.new_per_batch,
            config.strategy,
            config.window,
            int(np.random.SeedSequence([train.seed, step, p]).generate_state(1)[0]),
        )
    )

    def lr(i: int, n: int) -> float:
        anneal = 0.5 * (1 + math.cos(math.pi * i / n)) if train.schedule == "cosine" else 1.0
        return train.lr * config.lr_scale * anneal

    trainer.train_batches(batches, lr)
    return trainer
