"""The online selector protocol: a method that decides inside the batch loop which examples to backprop.

Selective-Backprop is the model: score each candidate batch with a forward pass without grad, keep
some examples, queue them until a full batch is ready, then train on exactly that batch. InfoBatch
needs no forward of its own: it hears the training forward's per-example losses (``observe``), draws
the epoch's rows at its start (``start_epoch``) and weighs their losses (``loss_weights``). Examples
are named by their row in the version's train split (0..N-1, in sample-id order), so a selector can
keep per-example state (a loss cache, say) in dense arrays. ``curation.selection.online.OnlineMethod``
gives the hooks neutral defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from curation.metrics.ledger import ComputeLedger

Scorer = Callable[[np.ndarray], np.ndarray]
"""``score(rows) -> per-example training losses``: a forward pass without grad, booked as selection forwards."""


@runtime_checkable
class OnlineSelector(Protocol):
    def start(self, n: int) -> object:
        """Reset for a run over a train split of ``n`` rows (a resumed run then loads its state)."""

    def select(self, candidates: np.ndarray, epoch: int, score: Scorer, ledger: ComputeLedger) -> np.ndarray:
        """Rows to train on now, from this or earlier candidate batches; empty while still queuing.

        Call ``score`` only for the candidates that need a fresh loss. The trainer books every
        ``score`` call as selection forwards and times this whole call as selection seconds; book any
        other cost (a proxy model, say) in ``ledger`` yourself.
        """

    def start_epoch(self, epoch: int, progress: float) -> None:
        """Before each epoch; ``progress``: the share of the run done (epochs, or the compute budget spent)."""

    def flush(self, epoch: int) -> np.ndarray:
        """Rows still queued at the end of the epoch to train on now (empty to carry them into the next)."""

    def loss_weights(self, rows: np.ndarray) -> np.ndarray | None:
        """Loss weights of a chosen batch's rows, or None (all 1)."""

    def observe(self, rows: np.ndarray, losses) -> None:
        """The per-example losses the training forward pass computed for ``rows`` (no extra pass): a detached
        tensor on the training device, so a selector that ignores them costs no device sync."""

    def state_dict(self) -> dict:
        """Everything needed to resume bit for bit (queue, loss history, RNG): tensors and plain values only,
        since checkpoints load with ``torch.load(weights_only=True)``."""

    def load_state_dict(self, state: dict) -> None: ...
