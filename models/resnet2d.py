"""A small 2D ResNet for ``[C, H, W]`` images (digits-sized to CIFAR-sized): the default for image versions.

Stem: Conv2d C->32 k3 (same size), BatchNorm, ReLU. Then three stages of one basic residual block each
(two Conv2d k3 + BatchNorm, identity or 1x1-conv shortcut) at 32, 64 and 128 channels; stages 2 and 3 halve
the height and width. Global average pooling and a linear classifier: about 0.31M parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from curation.errors import CurationError
from models.registry import ModelSpec, register


class BasicBlock2D(nn.Module):
    """conv3-BN-ReLU-conv3-BN plus the shortcut, then ReLU (He et al. 2016)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return torch.relu(h + self.shortcut(x))


class ResNet2D(nn.Module):
    """Stem, residual stages (``blocks`` basic blocks each at ``widths`` channels), pooling, linear."""

    def __init__(self, in_channels: int, num_classes: int, widths: Sequence[int] = (32, 64, 128), blocks: int = 1):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        layers: list[nn.Module] = []
        width = widths[0]
        for stage, out in enumerate(widths):
            for b in range(blocks):
                layers.append(BasicBlock2D(width, out, stride=2 if stage > 0 and b == 0 else 1))
                width = out
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, BasicBlock2D):  # zero-init the last BN: every block starts as the identity
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.pool(self.stages(self.stem(x))).flatten(1))

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> ResNet2D:
        if len(spec.feature_shape) != 3:
            raise CurationError(
                f"resnet2d needs image features shaped [channels, height, width], this version has "
                f"{list(spec.feature_shape)}",
                "use --arch mlp or cnn1d",
            )
        return cls(spec.feature_shape[0], spec.num_classes)


register("resnet2d", ResNet2D.from_spec, defaults={"epochs": 20, "batch_size": 64, "lr": 2e-3, "weight_decay": 1e-4})
