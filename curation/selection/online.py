"""Online methods: registered and parametrized like every selector, but they decide inside the Trainer.

An online method implements the Trainer's OnlineSelector protocol (curation/training/selector.py):
``start``, ``select``, ``flush``, ``state_dict``/``load_state_dict`` and three hooks with neutral
defaults here (``start_epoch``, ``loss_weights``, ``observe``). ``candidate_batch_size`` and
``equal_compute_epochs`` tell a comparison how to run it at the full-data run's compute.
"""

from __future__ import annotations

import numpy as np

from curation.selection.base import Method


class OnlineMethod(Method):
    """Base of the methods that choose the rows to backpropagate during training (no Plan of their own)."""

    online = True

    def candidate_batch_size(self, batch_size: int) -> int:
        """Rows offered per selection step when training batches hold ``batch_size`` rows."""
        return batch_size

    def equal_compute_epochs(self, epochs: int) -> int:
        """Epochs of this method that cost about ``epochs`` full-data epochs."""
        return epochs

    def start_epoch(self, epoch: int, progress: float) -> None:
        """Called before each epoch; ``progress`` is the share of the run done (epochs, or the budget spent)."""

    def flush(self, epoch: int) -> np.ndarray:
        """Rows still queued at the end of an epoch to train on now (none: carry them into the next)."""
        return np.empty(0, dtype=np.int64)

    def loss_weights(self, rows: np.ndarray) -> np.ndarray | None:
        """Per-row loss weights for a chosen batch (None: every row weighs 1)."""
        return None

    def observe(self, rows: np.ndarray, losses) -> None:
        """The per-row losses of the training forward pass on ``rows`` (free: no extra pass), as a detached
        tensor on the training device (or an array)."""
