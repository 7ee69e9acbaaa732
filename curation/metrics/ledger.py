"""The compute ledger: one type that every trainer and selector books its work into.

Training forwards and backwards, the selection's own forwards and seconds, and evaluation are
separate entries, so a method that saves training compute but spends it on selection shows it.
FLOPs are counted from the architecture's forward FLOPs per sample, measured once with
``torch.utils.flop_counter.FlopCounterMode``; a backward pass counts as twice the forward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import torch
from torch.utils.flop_counter import FlopCounterMode

from curation.errors import CurationError

BACKWARD_FACTOR = 2.0


def forward_flops_per_sample(model: torch.nn.Module, feature_shape: Sequence[int]) -> float:
    """Forward FLOPs of one sample (matmuls and convolutions, 2 per multiply-add), measured on a batch of 2."""
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(2, *feature_shape, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2


@dataclass
class ComputeLedger:
    """Cumulative cost of one run. Seconds are wall-clock; ``train_seconds`` excludes selection time."""

    flops_per_sample: float = 0.0
    forward_samples: int = 0
    backward_samples: int = 0
    train_flops: float = 0.0
    train_seconds: float = 0.0
    selection_forward_samples: int = 0
    selection_flops: float = 0.0
    selection_seconds: float = 0.0
    eval_forward_samples: int = 0
    eval_seconds: float = 0.0

    def book_forward(self, samples: int) -> None:
        self.forward_samples += int(samples)
        self.train_flops += samples * self.flops_per_sample

    def book_backward(self, samples: int) -> None:
        self.backward_samples += int(samples)
        self.train_flops += samples * BACKWARD_FACTOR * self.flops_per_sample

    def book_selection(self, forwards: int = 0, seconds: float = 0.0, flops: float | None = None) -> None:
        """Selection work: ``forwards`` no-grad forwards (FLOPs from the architecture unless given)."""
        self.selection_forward_samples += int(forwards)
        self.selection_flops += forwards * self.flops_per_sample if flops is None else flops
        self.selection_seconds += seconds

    def book_eval(self, samples: int, seconds: float) -> None:
        self.eval_forward_samples += int(samples)
        self.eval_seconds += seconds

    def absorb_selection(self, other: ComputeLedger) -> None:
        """Book everything another ledger spent (a scoring run, a plan's selection) as selection cost here."""
        self.book_selection(
            other.forward_samples + other.selection_forward_samples, other.total_seconds, flops=other.total_flops
        )

    @property
    def total_flops(self) -> float:
        """Training plus selection FLOPs (evaluation is measurement, not counted)."""
        return self.train_flops + self.selection_flops

    @property
    def total_seconds(self) -> float:
        return self.train_seconds + self.selection_seconds

    def to_dict(self) -> dict:
        return {**asdict(self), "total_flops": self.total_flops, "total_seconds": self.total_seconds}

    @classmethod
    def from_dict(cls, data: dict) -> ComputeLedger:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known - {"total_flops", "total_seconds"}
        if unknown:
            raise CurationError(f"ledger has unknown entries {sorted(unknown)}", "record ledgers with ComputeLedger")
        return cls(**{k: v for k, v in data.items() if k in known})


def equal_compute_epochs(epochs: int, ratio: float, warmup: int = 0) -> int:
    """The epochs a method trains to spend the compute of ``epochs`` full-data epochs.

    One of its epochs costs ``ratio`` of a full-data epoch, after ``warmup`` epochs at full cost (Selective-
    Backprop's first epoch backpropagates everything). The rule: the fewest epochs that reach the baseline's
    compute, ``warmup + ceil((epochs - warmup) / ratio)``, at least one; so a method never gets less compute
    than the baseline, and at most one of its own epochs more. A float error (1 / 0.1 = 10.000000000000002)
    does not add an epoch.
    """
    if ratio <= 0:
        raise CurationError(f"a method's cost per epoch must be positive, not {ratio}", "give a ratio above 0")
    warmup = min(warmup, epochs)
    return max(1, warmup + math.ceil((epochs - warmup) / ratio - 1e-9))
