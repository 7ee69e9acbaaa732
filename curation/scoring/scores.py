"""Per-sample scores from a model's logits (and penultimate activations), vectorised over a batch.

All scores grow with how hard or informative an example is: loss; EL2N (Paul et al. 2021,
||softmax - onehot||_2); the norm of the loss gradient w.r.t. the last linear layer's weights and
bias, ||p - y|| * sqrt(||h||^2 + 1); entropy; margin as 1 - (p_top1 - p_top2) (small margins are
informative); least confidence, 1 - max p. Forgetting events (Toneva et al. 2019) count
correct -> incorrect transitions of an example's prediction across training epochs.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import nn

from curation.errors import CurationError
from curation.faults import kill_point
from curation.training.data import Split
from curation.training.streaming import StreamedSplit
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
def predict(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 logits and penultimate activations of a batch (eval mode, inference mode, the input in the
    model's memory format; training mode restored). Scores are computed in float32, whatever the AMP setting."""
    captured = {}
    hook = _last_linear(model).register_forward_hook(lambda m, inputs, out: captured.update(h=inputs[0]))
    was_training = model.training
    model.eval()
    try:
        logits = model(x.contiguous(memory_format=memory_format(model, x.shape[1:], x.device))).float()
    finally:
        hook.remove()
        model.train(was_training)
    return logits, captured["h"]


def score_batches(
    model: nn.Module, split: Split | StreamedSplit, forgetting: np.ndarray | None = None
) -> Iterator[pa.RecordBatch]:
    """Every score of SCORES, the penultimate embedding and the last-layer gradient (softmax - onehot) of every
    row of ``split``, one record batch per inference batch on the split's device (the caller books the
    forwards): memory holds one batch, whatever the split's size."""
    for i, (rows, x, y) in enumerate(split.in_order(inference_batch(split.device))):
        logits, h = predict(model, x)
        columns = {"sample_id": pa.array(split.sample_ids[rows], pa.int64())}
        columns |= {name: pa.array(values, pa.float32()) for name, values in batch_scores(logits, y, h).items()}
        if forgetting is not None:
            columns["forgetting"] = pa.array(forgetting[rows].astype(np.float32), pa.float32())
        gradient = (torch.softmax(logits, 1) - F.one_hot(y, logits.shape[1])).cpu().numpy()
        for name, matrix in (("embedding", h.flatten(1).float().cpu().numpy()), ("gradient", gradient)):
            flat = pa.array(np.ascontiguousarray(matrix, np.float32).reshape(-1), pa.float32())
            # items named as Parquet names them: batches read back from a file are written again byte for byte
            kind = pa.list_(pa.field("element", pa.float32()), matrix.shape[1])
            columns[name] = pa.FixedSizeListArray.from_arrays(flat, type=kind)
        kill_point(f"score:batch-{i}")
        yield pa.RecordBatch.from_pydict(columns)


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
