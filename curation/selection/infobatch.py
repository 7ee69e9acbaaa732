"""InfoBatch (Qin et al., ICLR 2024): prune low-loss samples per epoch at no extra forward pass.

Every train row keeps a score: its loss the last time it was trained on (the training forward pass
reports it through ``observe``; rows never trained on have no score and count as high). At the start
of each epoch, each scored row below the mean score is dropped with probability ``prune`` (r); the
kept low-score rows weigh 1 / (1 - r) in the loss, so the epoch's expected gradient equals the full
epoch's; high-score rows are always kept. Once ``1 - anneal`` of the run is done (epochs, or the
budget spent) every row is used, unweighted. Dropped rows keep their old scores. The draw of epoch e
comes from ``(seed, e)``; the scores are the state a checkpoint keeps, so a resumed run is bit for bit.
"""

from __future__ import annotations

import numpy as np

from curation.errors import CurationError
from curation.selection.base import check_seed, register_selector
from curation.selection.online import OnlineMethod


@register_selector
class InfoBatch(OnlineMethod):
    """InfoBatch: drop below-mean-loss samples with probability prune, rescale the kept ones, anneal."""

    name = "infobatch"

    def __init__(self, prune: float = 0.5, anneal: float = 0.125, batch_size: int | None = None, seed: int = 0):
        self.prune = prune
        self.anneal = anneal
        self.batch_size = batch_size
        self.seed = seed

    def start(self, n: int) -> InfoBatch:
        """Reset for a run over ``n`` training rows: no row scored yet."""
        if not 0 <= self.prune < 1 or not 0 <= self.anneal <= 1:
            raise CurationError(
                f"bad InfoBatch parameters prune={self.prune}, anneal={self.anneal}",
                "use 0 <= prune < 1 and 0 <= anneal <= 1, e.g. infobatch:prune=0.5,anneal=0.125",
            )
        check_seed(self.seed)
        self.scores_ = np.full(n, np.nan, dtype=np.float32)
        self.keep_ = np.ones(n, dtype=bool)
        self.weight_ = np.ones(n, dtype=np.float32)
        self._queue = np.empty(0, dtype=np.int64)
        return self

    def start_epoch(self, epoch: int, progress: float) -> None:
        """Draw this epoch's kept rows and their weights from the scores (everything while annealing)."""
        n = len(self.scores_)
        self.keep_ = np.ones(n, dtype=bool)
        self.weight_ = np.ones(n, dtype=np.float32)
        scored = ~np.isnan(self.scores_)
        if progress >= 1 - self.anneal - 1e-12 or not scored.any():
            return
        low = np.zeros(n, dtype=bool)
        low[scored] = self.scores_[scored] < self.scores_[scored].mean(dtype=np.float64)
        drop = np.random.default_rng([self.seed, epoch]).random(n) < self.prune
        self.keep_ = ~(low & drop)
        self.weight_[low] = 1 / (1 - self.prune)

    def epoch_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows this epoch keeps and their loss weights (after ``start_epoch``)."""
        rows = np.flatnonzero(self.keep_)
        return rows, self.weight_[rows]

    # -- the Trainer's OnlineSelector protocol ----------------------------------------------------

    def select(self, candidates: np.ndarray, epoch: int, score, ledger) -> np.ndarray:
        """The kept candidates, queued into full batches; no forward pass."""
        candidates = np.asarray(candidates, dtype=np.int64)
        self._queue = np.concatenate([self._queue, candidates[self.keep_[candidates]]])
        size = self.batch_size or len(candidates)
        if len(self._queue) < size:
            return np.empty(0, dtype=np.int64)
        batch, self._queue = self._queue[:size], self._queue[size:]
        return batch

    def flush(self, epoch: int) -> np.ndarray:
        """The epoch's last, partial batch (the next epoch draws afresh)."""
        rest, self._queue = self._queue, np.empty(0, dtype=np.int64)
        return rest

    def loss_weights(self, rows: np.ndarray) -> np.ndarray:
        return self.weight_[rows]

    def observe(self, rows: np.ndarray, losses) -> None:
        import torch

        self.scores_[rows] = torch.as_tensor(losses).float().cpu().numpy()

    def state_dict(self) -> dict:
        import torch

        return {"scores": torch.from_numpy(self.scores_.copy()), "queue": torch.from_numpy(self._queue.copy())}

    def load_state_dict(self, state: dict) -> None:
        scores = state["scores"].numpy()
        if scores.shape != self.scores_.shape:
            raise ValueError(f"InfoBatch scores of {scores.shape[0]} rows for {self.scores_.shape[0]}")
        self.scores_ = scores.copy()
        self._queue = state["queue"].numpy().copy()
