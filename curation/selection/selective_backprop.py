"""Selective-Backprop (Jiang et al. 2019): backpropagate only the examples whose loss is high.

For a candidate batch, every example is forwarded and its loss L_i kept. The losses join a history
H of the last R losses (current batch first), then F(L) = |{l in H : l < L}| / |H| and
p_i = max(p_min, F(L_i) ** beta); example i is selected by a Bernoulli(p_i) draw. The expected
selected fraction is about 1 / (beta + 1). The first ``warmup_epochs`` select everything.
The stale variant caches each example's last loss with its epoch and skips the selection
forward for examples whose cached loss is younger than ``staleness`` epochs.
Everything is vectorised over the batch: no per-example Python. Selected rows queue up until a
full batch of ``batch_size`` (default: the candidate batch size) is ready (the Trainer's
OnlineSelector protocol).
"""

from __future__ import annotations

import numpy as np

from curation.errors import CurationError
from curation.selection.base import register_selector
from curation.selection.online import OnlineMethod


@register_selector
class SelectiveBackprop(OnlineMethod):
    """Selective-Backprop: forward every candidate, backpropagate high-loss ones (p = F(L)^beta)."""

    name = "selective-backprop"

    def __init__(
        self,
        beta: float = 3.0,
        history: int = 1024,
        p_min: float = 0.0,
        staleness: int = 0,
        warmup_epochs: int = 1,
        batch_size: int | None = None,
        seed: int = 0,
    ):
        self.beta = beta
        self.batch_size = batch_size
        self.history = history
        self.p_min = p_min
        self.staleness = staleness
        self.warmup_epochs = warmup_epochs
        self.seed = seed

    @classmethod
    def at_ratio(cls, ratio: float) -> dict:
        """About ``ratio`` of each candidate batch backpropagated: beta = 1/ratio - 1."""
        return {"beta": 1 / ratio - 1}

    def candidate_batch_size(self, batch_size: int) -> int:
        """(beta + 1) x the training batch: one selection forward per training batch on average."""
        return int(batch_size * (self.beta + 1))

    def equal_compute_epochs(self, epochs: int) -> int:
        """Epochs costing about ``epochs`` full-data epochs (the first epoch backpropagates all): each later
        epoch costs selection forwards (all rows, or 1/staleness) plus 1/(beta+1) of the forward+backward."""
        from curation.metrics.ledger import BACKWARD_FACTOR, equal_compute_epochs

        per_epoch = ((1 / self.staleness if self.staleness else 1) + (1 + BACKWARD_FACTOR) / (self.beta + 1)) / (
            1 + BACKWARD_FACTOR
        )
        return equal_compute_epochs(epochs, per_epoch, warmup=1)

    def start(self, n: int) -> SelectiveBackprop:
        """Reset for a run over ``n`` training rows (row positions index the loss cache)."""
        if self.beta < 0 or not 0 <= self.p_min <= 1 or self.history < 1 or self.staleness < 0:
            raise CurationError(
                f"bad Selective-Backprop parameters {self.get_params()}",
                "use beta >= 0, 0 <= p_min <= 1, history >= 1, staleness >= 0",
            )
        self._rng = np.random.default_rng(self.seed)
        self._ring = np.empty(self.history, dtype=np.float64)
        self._filled = 0
        self._head = 0
        self.cached_loss_ = np.full(n, np.nan, dtype=np.float32)
        self.cached_epoch_ = np.full(n, -(10**9), dtype=np.int64)
        self._queue = np.empty(0, dtype=np.int64)
        return self

    def needs_forward(self, rows: np.ndarray, epoch: int) -> np.ndarray:
        """Which rows need a fresh selection forward (all of them unless the stale variant is on)."""
        if self.staleness == 0 or epoch < self.warmup_epochs:
            return np.ones(len(rows), dtype=bool)
        return (epoch - self.cached_epoch_[rows]) >= self.staleness

    def _push(self, losses: np.ndarray) -> None:
        losses = losses[-self.history :]
        idx = (self._head + np.arange(len(losses))) % self.history
        self._ring[idx] = losses
        self._head = (self._head + len(losses)) % self.history
        self._filled = min(self.history, self._filled + len(losses))

    def probabilities(self, losses: np.ndarray, fresh: np.ndarray | None = None) -> np.ndarray:
        """p_i = max(p_min, F(L_i)^beta) after appending this batch's fresh losses to the history."""
        losses = np.asarray(losses, dtype=np.float64)
        self._push(losses if fresh is None else losses[fresh])
        if self._filled == 0:  # nothing measured yet (all cached): no history to rank against
            return np.ones(len(losses))
        history = np.sort(self._ring[: self._filled])
        percentile = np.searchsorted(history, losses, side="left") / self._filled  # strictly lower
        return np.maximum(self.p_min, percentile**self.beta)

    def decide(self, rows: np.ndarray, losses: np.ndarray, epoch: int, fresh: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask of the rows to backpropagate. ``losses`` align with ``rows``; entries where
        ``fresh`` is False come from the cache (stale variant) and are not re-measured."""
        rows = np.asarray(rows)
        losses = np.asarray(losses, dtype=np.float32)
        if fresh is None:
            fresh = np.ones(len(rows), dtype=bool)
        self.cached_loss_[rows[fresh]] = losses[fresh]
        self.cached_epoch_[rows[fresh]] = epoch
        if epoch < self.warmup_epochs:
            self._push(losses[fresh].astype(np.float64))
            return np.ones(len(rows), dtype=bool)
        p = self.probabilities(losses, fresh)
        return self._rng.random(len(rows)) < p

    def cached(self, rows: np.ndarray) -> np.ndarray:
        return self.cached_loss_[rows]

    # -- the Trainer's OnlineSelector protocol ----------------------------------------------------

    def select(self, candidates: np.ndarray, epoch: int, score, ledger) -> np.ndarray:
        """Score the candidates that need it, draw, queue; return every full batch the queue holds (docs/papers.md:
        B queued -> train on those B; several at once in warm-up, where a candidate batch selects all)."""
        candidates = np.asarray(candidates, dtype=np.int64)
        if epoch < self.warmup_epochs:  # warm-up selects everything: no selection forward needed
            chosen = candidates
        else:
            fresh = self.needs_forward(candidates, epoch)
            losses = self.cached(candidates).copy()
            if fresh.any():
                losses[fresh] = score(candidates[fresh])
            chosen = candidates[self.decide(candidates, losses, epoch, fresh)]
        self._queue = np.concatenate([self._queue, chosen])
        size = self.batch_size or len(candidates)
        ready = len(self._queue) // size * size
        batches, self._queue = self._queue[:ready], self._queue[ready:]
        return batches

    def state_dict(self) -> dict:
        import torch

        return {
            "ring": torch.from_numpy(self._ring.copy()),
            "filled": self._filled,
            "head": self._head,
            "cached_loss": torch.from_numpy(self.cached_loss_.copy()),
            "cached_epoch": torch.from_numpy(self.cached_epoch_.copy()),
            "queue": torch.from_numpy(self._queue.copy()),
            "rng": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        self._ring = state["ring"].numpy().copy()
        self._filled, self._head = int(state["filled"]), int(state["head"])
        self.cached_loss_ = state["cached_loss"].numpy().copy()
        self.cached_epoch_ = state["cached_epoch"].numpy().copy()
        self._queue = state["queue"].numpy().copy()
        self._rng.bit_generator.state = state["rng"]


@register_selector
class SelectiveBackpropStale(SelectiveBackprop):
    """Selective-Backprop, stale variant: reuse a sample's cached loss for ``staleness`` epochs."""

    name = "selective-backprop-stale"

    def __init__(
        self,
        beta: float = 3.0,
        history: int = 1024,
        p_min: float = 0.0,
        staleness: int = 2,
        warmup_epochs: int = 1,
        batch_size: int | None = None,
        seed: int = 0,
    ):
        super().__init__(beta, history, p_min, staleness, warmup_epochs, batch_size, seed)
