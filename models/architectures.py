"""Built-in architectures for the bundled data: an MLP, the MNIST-1D ConvNet, LeNet-5 for small images."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from curation.errors import CurationError
from models.registry import ModelSpec


class MLP(nn.Module):
    """Flatten, then ``hidden`` ReLU layers, then a linear classifier."""

    def __init__(self, num_features: int, num_classes: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = num_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> MLP:
        return cls(spec.num_features, spec.num_classes)


def _conv_out(length: int, kernel: int, stride: int, padding: int) -> int:
    return (length + 2 * padding - kernel) // stride + 1


class ConvNet1D(nn.Module):
    """The MNIST-1D paper's ConvNet: three strided Conv1d layers with ReLU, then a linear layer.

    Conv1d C->25 k5 s2 p1, 25->25 k3 s2 p1, 25->25 k3 s2 p1; for MNIST-1D ([1, 40]) the flattened
    features are 25 x 5 = 125, as in the paper.
    """

    def __init__(self, in_channels: int, length: int, num_classes: int, channels: int = 25):
        super().__init__()
        out = _conv_out(_conv_out(_conv_out(length, 5, 2, 1), 3, 2, 1), 3, 2, 1)
        if out < 1:
            raise CurationError(f"cnn1d needs sequences of at least 3 steps, got {length}", "use --arch mlp")
        self.conv1 = nn.Conv1d(in_channels, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.linear = nn.Linear(channels * out, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(h))
        h = torch.relu(self.conv3(h))
        return self.linear(h.flatten(1))

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> ConvNet1D:
        if len(spec.feature_shape) != 2:
            raise CurationError(
                f"cnn1d needs features shaped [channels, length], this version has {list(spec.feature_shape)}",
                "use --arch mlp or lenet5",
            )
        channels, length = spec.feature_shape
        return cls(channels, length, spec.num_classes)


class LeNet5(nn.Module):
    """LeNet-5 with ReLU and max-pooling; 'same' padding so that 8x8 digits fit (two 2x2 pools)."""

    def __init__(self, in_channels: int, height: int, width: int, num_classes: int):
        super().__init__()
        if height < 4 or width < 4:
            raise CurationError(f"lenet5 needs images of at least 4x4, got {height}x{width}", "use --arch mlp")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * (height // 4) * (width // 4), 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> LeNet5:
        if len(spec.feature_shape) != 3:
            raise CurationError(
                f"lenet5 needs image features shaped [channels, height, width], this version has "
                f"{list(spec.feature_shape)}",
                "use --arch mlp or cnn1d",
            )
        return cls(*spec.feature_shape, spec.num_classes)
