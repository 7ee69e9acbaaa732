"""A 1D ResNet for ``[C, L]`` sequences (MNIST-1D ``[1, 40]``): large enough that per-sample compute
dominates per-batch overhead, as in the users' real models.

Stem: Conv1d C->64 k5 s2 (halves the length), BatchNorm, ReLU. Then three stages of two basic
residual blocks (two Conv1d k3 + BatchNorm, identity or 1x1-conv shortcut) at 64, 128 and 288 channels;
stages 2 and 3 halve the length. Global average pooling and a linear classifier.

Most parameters sit in the late, short stages, so the model has about 1.13M parameters at about
15 MFLOPs per MNIST-1D sample (cnn1d: about 0.06 MFLOPs).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from curation.errors import CurationError
from models.registry import ModelSpec, register


class BasicBlock1D(nn.Module):
    """conv3-BN-ReLU-conv3-BN plus the shortcut, then ReLU (He et al. 2016, in 1D)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv1d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm1d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return torch.relu(h + self.shortcut(x))


class ResNet1D(nn.Module):
    """Stem, residual stages (``blocks`` basic blocks each at ``widths`` channels), pooling, linear."""

    def __init__(
        self, in_channels: int, length: int, num_classes: int, widths: Sequence[int] = (64, 128, 288), blocks: int = 2
    ):
        super().__init__()
        if length < 2:
            raise CurationError(f"resnet1d needs sequences of at least 2 steps, got {length}", "use --arch mlp")
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, widths[0], 5, stride=2, padding=2, bias=False), nn.BatchNorm1d(widths[0]), nn.ReLU()
        )
        layers: list[nn.Module] = []
        width = widths[0]
        for stage, out in enumerate(widths):
            for b in range(blocks):
                layers.append(BasicBlock1D(width, out, stride=2 if stage > 0 and b == 0 else 1))
                width = out
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.linear = nn.Linear(width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # zero-init the last BN of each block: every block starts as the identity
            if isinstance(m, BasicBlock1D):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.stem(x))
        return self.linear(self.pool(h).flatten(1))

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> ResNet1D:
        if len(spec.feature_shape) != 2:
            raise CurationError(
                f"resnet1d needs features shaped [channels, length], this version has {list(spec.feature_shape)}",
                "use --arch mlp or lenet5",
            )
        channels, length = spec.feature_shape
        return cls(channels, length, spec.num_classes)


# Defaults checked on a validation split held out of MNIST-1D's train split (3200/800), not the test split.
register(
    "resnet1d",
    ResNet1D.from_spec,
    defaults={"epochs": 30, "batch_size": 128, "lr": 2e-3, "weight_decay": 0.05, "label_smoothing": 0.1},
)
