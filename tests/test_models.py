"""Architectures by name: the built-ins fit the bundled data; users register their own; bad names fail in one line."""

import pytest
import torch
from torch import nn

import models
from curation.errors import CurationError
from curation.training.config import TrainConfig
from models import ModelSpec, build, default_for, register
from models import registry as model_registry


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry, so a test's registrations do not leak."""
    monkeypatch.setattr(model_registry, "_REGISTRY", dict(model_registry._REGISTRY))


def test_mnist1d_convnet_is_the_papers():
    model = build("cnn1d", ModelSpec(40, (1, 40), 10))
    convs = [model.conv1, model.conv2, model.conv3]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0], c.padding[0]) for c in convs] == [
        (1, 25, 5, 2, 1),
        (25, 25, 3, 2, 1),
        (25, 25, 3, 2, 1),
    ]
    assert (model.linear.in_features, model.linear.out_features) == (125, 10)  # 25 channels x 5 steps
    assert model(torch.randn(7, 1, 40)).shape == (7, 10)


def test_lenet5_takes_8x8_digits_and_mlp_takes_flat_vectors():
    lenet = build("lenet5", ModelSpec(64, (1, 8, 8), 10))
    assert lenet(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    assert [m.out_channels for m in lenet.modules() if isinstance(m, nn.Conv2d)] == [6, 16]
    assert [m.out_features for m in lenet.modules() if isinstance(m, nn.Linear)] == [120, 84, 10]
    mlp = build("mlp", ModelSpec(5, (5,), 3))
    assert mlp(torch.randn(4, 5)).shape == (4, 3)


def test_default_architecture_follows_the_feature_shape():
    assert [default_for(s) for s in ([1, 8, 8], [1, 40], [12])] == ["lenet5", "cnn1d", "mlp"]
    assert TrainConfig().resolve([1, 40]).arch == "cnn1d"
    assert TrainConfig(arch="mlp").resolve([1, 40]).arch == "mlp"


def test_spec_from_a_version_record():
    class Version:
        num_features, feature_shape, classes = 64, [1, 8, 8], [0, 1, 2, 5]

    assert ModelSpec.of(Version) == ModelSpec(64, (1, 8, 8), 6)  # outputs cover labels 0..max
    Version.classes = [-1, 0, 1]
    with pytest.raises(CurationError, match="not 0..C-1"):
        ModelSpec.of(Version)


def test_unknown_architecture_is_one_line_naming_the_choices():
    with pytest.raises(CurationError) as info:
        build("resnet9000", ModelSpec(40, (1, 40), 10))
    message = str(info.value)
    assert "unknown architecture 'resnet9000'" in message and "cnn1d" in message and "\n" not in message


def test_architecture_and_shape_mismatch_is_a_user_error():
    with pytest.raises(CurationError, match="lenet5 needs image features"):
        build("lenet5", ModelSpec(40, (1, 40), 10))
    with pytest.raises(CurationError, match="cnn1d needs features shaped"):
        build("cnn1d", ModelSpec(12, (12,), 3))


def test_user_registered_architecture_with_its_defaults(registry):
    @register("tiny", defaults={"epochs": 3, "lr": 0.05})
    def tiny(spec):
        return nn.Sequential(nn.Flatten(), nn.Linear(spec.num_features, spec.num_classes))

    assert "tiny" in models.names()
    model = build("tiny", ModelSpec(40, (1, 40), 10))
    assert model(torch.randn(2, 1, 40)).shape == (2, 10)
    resolved = TrainConfig(arch="tiny", lr=0.2).resolve([1, 40])
    assert (resolved.epochs, resolved.lr, resolved.batch_size) == (3, 0.2, 128)  # user > architecture > fallback

    with pytest.raises(CurationError, match="already registered"):
        register("tiny", tiny)
    register("not-a-module", lambda spec: "oops")
    with pytest.raises(CurationError, match="not a torch.nn.Module"):
        build("not-a-module", ModelSpec(40, (1, 40), 10))


def test_bad_training_settings_are_one_line():
    with pytest.raises(CurationError, match="bad training setting 'epochs'.*--epochs"):
        TrainConfig.make(epochs=0)
    with pytest.raises(CurationError, match="'device'"):
        TrainConfig.make(device="tpu")
