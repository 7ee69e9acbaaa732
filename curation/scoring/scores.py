"""Per-sample scores from a model's logits (and penultimate activations), vectorised over a batch.

All scores grow with how hard or informative an example is: loss; EL2N (Paul et al. 2021,
||softmax - onehot||_2); the norm of the loss gradient w.r.t. the last linear layer's weights and
bias, ||p - y|| * sqrt(||h||^2 + 1); entropy; margin as 1 - (p_top1 - p_top2) (small margins are
informative); least confidence, 1 - max p. Forgetting events (Toneva et al. 2019) count
correct -> incorrect transitions of an example's prediction across training epochs.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import nn

from curation.errors import CurationError
from curation.faults import kill_point
from curation.training.data import Split
from curation.training.trainer import inference_batch, memory_format

SCORES = ("loss", "el2n", "grad_norm", "entropy", "margin", "least_confidence")


def _last_linear(model: nn.Module) -> nn.Linear:
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise CurationError(
            f"{type(model).__name__} has no final nn.Linear layer to score with",
            "score with an architecture that ends in a linear classifier",
        )
    return layers[-1]


@torch.inference_mode()
def predict(model: nn.Module, split: Split, rows: np.ndarray):
    """Float32 logits, labels and penultimate activations of ``rows`` (eval mode, inference mode, the input in
    the model's memory format; training mode restored). Scores are computed in float32, whatever the AMP setting."""
    captured = {}
    hook = _last_linear(model).register_forward_hook(lambda m, inputs, out: captured.update(h=inputs[0]))
    was_training = model.training
    model.eval()
    try:
        x, y = split.batch(rows)
        logits = model(x.contiguous(memory_format=memory_format(model, x.shape[1:], x.device))).float()
    finally:
        hook.remove()
        model.train(was_training)
    return logits, y, captured["h"]


def score_table(model: nn.Module, split: Split, forgetting: np.ndarray | None = None) -> pa.Table:
    """Every score of SCORES, the penultimate embedding and the last-layer gradient (softmax - onehot) of every
    row of ``split``, in large inference batches on the split's device (the caller books the forwards)."""
    parts: dict[str, list] = {name: [] for name in SCORES}
    embeddings, gradients = [], []
    size = inference_batch(split.device)
    for lo in range(0, len(split), size):
        rows = np.arange(lo, min(lo + size, len(split)))
        logits, y, h = predict(model, split, rows)
        for name, values in batch_scores(logits, y, h).items():
            parts[name].append(values)
        embeddings.append(h.flatten(1).float().cpu().numpy())
        kill_point(f"score:batch-{lo // size}")
        gradients.append((torch.softmax(logits, 1) - F.one_hot(y, logits.shape[1])).cpu().numpy())
    columns = {"sample_id": pa.array(split.sample_ids, pa.int64())}
    columns |= {name: pa.array(np.concatenate(v), pa.float32()) for name, v in parts.items()}
    if forgetting is not None:
        columns["forgetting"] = pa.array(forgetting.astype(np.float32), pa.float32())
    for name, blocks in (("embedding", embeddings), ("gradient", gradients)):
        matrix = np.concatenate(blocks).astype(np.float32)
        columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float32()), matrix.shape[1])
    return pa.table(columns)


@torch.inference_mode()
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
