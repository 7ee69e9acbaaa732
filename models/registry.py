"""Architectures by name: register your own ``torch.nn.Module`` factory, build one from a version's manifest."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from curation.errors import CurationError


@dataclass(frozen=True)
class ModelSpec:
    """What a data set version tells an architecture: input size and shape, number of outputs."""

    num_features: int
    feature_shape: tuple[int, ...]
    num_classes: int

    @classmethod
    def of(cls, version: Any) -> ModelSpec:
        """From a version record (``num_features``, ``feature_shape``, ``classes``); labels must be 0..C-1."""
        classes = [int(c) for c in version.classes]
        if not classes or min(classes) < 0:
            raise CurationError(
                f"labels of this version are {classes[:5]}..., not 0..C-1",
                "re-add the data with labels encoded as 0..C-1",
            )
        return cls(int(version.num_features), tuple(int(s) for s in version.feature_shape), max(classes) + 1)


Factory = Callable[[ModelSpec], nn.Module]


@dataclass(frozen=True)
class Architecture:
    """A named factory and the training defaults that suit it (keys of ``TrainConfig``)."""

    name: str
    factory: Factory
    defaults: dict = field(default_factory=dict)


_REGISTRY: dict[str, Architecture] = {}


def register(name: str, factory: Factory | None = None, *, defaults: dict | None = None, replace: bool = False):
    """Register ``factory(spec) -> nn.Module`` under ``name``; usable as a decorator."""

    def add(fn: Factory) -> Factory:
        if name in _REGISTRY and not replace:
            raise CurationError(
                f"architecture {name!r} is already registered", "pick another name or pass replace=True"
            )
        _REGISTRY[name] = Architecture(name, fn, dict(defaults or {}))
        return fn

    return add if factory is None else add(factory)


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> Architecture:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise CurationError(f"unknown architecture {name!r}", f"use one of: {', '.join(names())}") from None


def build(name: str, spec: ModelSpec) -> nn.Module:
    """A fresh model (initialised from torch's global RNG: seed it first)."""
    model = get(name).factory(spec)
    if not isinstance(model, nn.Module):
        raise CurationError(
            f"architecture {name!r} built a {type(model).__name__}, not a torch.nn.Module",
            "make its factory return an nn.Module",
        )
    return model


def default_for(feature_shape: Sequence[int], images: bool = False) -> str:
    """The built-in architecture for a version: resnet2d for decoded images, else by feature shape: lenet5 for
    [C, H, W], cnn1d for [C, L] sequences, mlp for flat vectors."""
    if images:
        return "resnet2d"
    return {3: "lenet5", 2: "cnn1d"}.get(len(feature_shape), "mlp")
