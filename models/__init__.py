"""Torch architectures by name. Add your own::

from models import register

@register("mynet", defaults={"epochs": 10, "lr": 1e-3})
def mynet(spec):  # spec: num_features, feature_shape, num_classes
    return MyNet(spec.feature_shape, spec.num_classes)
"""

from models.architectures import MLP, ConvNet1D, LeNet5
from models.registry import Architecture, ModelSpec, build, default_for, get, names, register

__all__ = [
    "MLP",
    "Architecture",
    "ConvNet1D",
    "LeNet5",
    "ModelSpec",
    "build",
    "default_for",
    "get",
    "names",
    "register",
]

# Defaults: cnn1d's were chosen on a validation split held out of MNIST-1D's train split (docs/training.md).
register("mlp", MLP.from_spec, defaults={"epochs": 30, "batch_size": 64, "lr": 1e-3, "weight_decay": 1e-4})
register(
    "cnn1d",
    ConvNet1D.from_spec,
    defaults={"epochs": 60, "batch_size": 50, "lr": 2e-2, "weight_decay": 0.1, "label_smoothing": 0.1},
)
register("lenet5", LeNet5.from_spec, defaults={"epochs": 30, "batch_size": 64, "lr": 2e-3, "weight_decay": 1e-4})
import models.resnet1d  # noqa: E402,F401  (registers "resnet1d")
import models.resnet2d  # noqa: E402,F401  (registers "resnet2d")
