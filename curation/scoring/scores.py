"""Per-sample scores from a model's logits (and penultimate activations), vectorised over a batch.

All scores grow with how hard or informative an example is: loss; EL2N (Paul et al. 2021,
||softmax - onehot||_2); the norm of the loss gradient w.r.t. the last linear layer's weights and
bias, ||p - y|| * sqrt(||h||^2 + 1); entropy; margin as 1 - (p_top1 - p_top2) (small margins are
informative); least confidence, 1 - max p. Forgetting events (Toneva et al. 2019) count
correct -> incorrect transitions of an example's prediction across training epochs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SCORES = ("loss", "el2n", "grad_norm", "entropy", "margin", "least_confidence")


@torch.no_grad()
def batch_scores(logits: torch.Tensor, labels: torch.Tensor, penultimate: torch.Tensor | None = None) -> dict:
    """Every score of SCORES for one batch, as float32 numpy arrays (grad_norm needs ``penultimate``)."""
    logits = logits.float()
    probs = F.softmax(logits, dim=1)
    onehot = F.one_hot(labels, probs.shape[1]).float()
    residual = probs - onehot  # the loss gradient w.r.t. the logits
    top2 = probs.topk(min(2, probs.shape[1]), dim=1).values
    second = top2[:, 1] if top2.shape[1] > 1 else torch.zeros_like(top2[:, 0])
    out = {
        "loss": F.cross_entropy(logits, labels, reduction="none"),
        "el2n": residual.norm(dim=1),
        "entropy": -(probs * probs.clamp_min(1e-12).log()).sum(dim=1),
        "margin": 1 - (top2[:, 0] - second),
        "least_confidence": 1 - top2[:, 0],
    }
    if penultimate is not None:
        h = penultimate.float().flatten(1)
        out["grad_norm"] = residual.norm(dim=1) * torch.sqrt(h.pow(2).sum(dim=1) + 1)
    return {k: v.cpu().numpy().astype(np.float32) for k, v in out.items()}


def forgetting_events(correct_per_epoch: np.ndarray) -> np.ndarray:
    """Per example, how often a correct prediction became incorrect in the next epoch ((epochs, N) bools)."""
    correct = np.asarray(correct_per_epoch, dtype=bool)
    if correct.shape[0] < 2:
        return np.zeros(correct.shape[1], dtype=np.int32)
    return (correct[:-1] & ~correct[1:]).sum(axis=0).astype(np.int32)
