"""Per-sample scores against their definitions."""

import numpy as np
import pytest
import torch

from curation.scoring.scores import batch_scores, forgetting_events


def test_scores_match_definitions():
    torch.manual_seed(0)
    logits, labels, h = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1]), torch.randn(6, 5)
    s = batch_scores(logits, labels, h)
    p = torch.softmax(logits, 1)
    np.testing.assert_allclose(s["loss"], -torch.log(p[range(6), labels]).numpy(), rtol=1e-5)
    np.testing.assert_allclose(s["el2n"], (p - torch.nn.functional.one_hot(labels, 4)).norm(dim=1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(s["least_confidence"], 1 - p.max(1).values.numpy(), rtol=1e-5)
    # grad_norm equals the autograd norm of the CE gradient w.r.t. a linear layer's weight and bias
    layer = torch.nn.Linear(5, 4)
    for i in range(6):
        layer.zero_grad()
        with torch.no_grad():
            layer.weight.zero_()
            layer.bias.copy_(logits[i])  # logits_i = W h + b with W = 0
        torch.nn.functional.cross_entropy(layer(h[i : i + 1]), labels[i : i + 1]).backward()
        full = torch.cat([layer.weight.grad.flatten(), layer.bias.grad]).norm()
        assert s["grad_norm"][i] == pytest.approx(float(full), rel=1e-5)


def test_confident_correct_examples_score_low():
    logits = torch.tensor([[10.0, 0, 0], [0.1, 0, 0]])
    s = batch_scores(logits, torch.tensor([0, 0]))
    for name in ("loss", "el2n", "entropy", "margin", "least_confidence"):
        assert s[name][0] < s[name][1], name


def test_forgetting_counts_correct_to_incorrect_transitions():
    correct = np.array([[1, 1, 0, 1], [0, 1, 1, 1], [1, 1, 0, 0], [0, 1, 1, 1]], dtype=bool)
    assert forgetting_events(correct).tolist() == [2, 0, 1, 1]
    assert forgetting_events(correct[:1]).tolist() == [0, 0, 0, 0]
