"""resnet1d: a residual 1D ConvNet with BatchNorm, >= 1M parameters for MNIST-1D, trainable with its defaults."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from curation.errors import CurationError
from curation.training.config import TrainConfig
from models import ModelSpec, build, names
from models.resnet1d import BasicBlock1D

MNIST1D = ModelSpec(40, (1, 40), 10)


def test_resnet1d_is_registered_large_and_residual():
    assert "resnet1d" in names()
    model = build("resnet1d", MNIST1D)
    assert sum(p.numel() for p in model.parameters()) >= 1_000_000
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock1D)]
    assert len(blocks) >= 6
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    # a block adds its input back: with the residual branch zeroed, it is relu(x) for same-shape blocks
    block = next(b for b in blocks if isinstance(b.shortcut, nn.Identity))
    nn.init.zeros_(block.bn2.weight)
    nn.init.zeros_(block.bn2.bias)
    block.eval()
    x = torch.randn(3, block.conv1.in_channels, 10)
    assert torch.allclose(block(x), torch.relu(x))


@pytest.mark.parametrize("batch, channels, length", [(7, 1, 40), (2, 3, 17)])
def test_forward_shape(batch, channels, length):
    model = build("resnet1d", ModelSpec(channels * length, (channels, length), 5)).eval()
    assert model(torch.randn(batch, channels, length)).shape == (batch, 5)


def test_bad_shapes_are_one_line_errors():
    with pytest.raises(CurationError, match="resnet1d needs features shaped"):
        build("resnet1d", ModelSpec(64, (1, 8, 8), 10))


def test_trains_a_few_steps_with_its_defaults():
    cfg = TrainConfig(arch="resnet1d").resolve([1, 40])
    assert cfg.arch == "resnet1d" and cfg.batch_size >= 32 and cfg.epochs >= 1
    torch.manual_seed(0)
    model = build("resnet1d", MNIST1D)
    x = torch.randn(64, 1, 40)
    y = torch.randint(0, 10, (64,))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    losses = []
    for _ in range(25):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.5 * losses[0]  # fits 64 random labels: gradients flow through every stage
    model.eval()
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() > 0.5


def test_exportable_for_mlflow():
    model = build("resnet1d", MNIST1D).eval()
    x = torch.randn(2, 1, 40)
    exported = torch.export.export(model, (x,))
    assert torch.allclose(exported.module()(x), model(x), atol=1e-5)
