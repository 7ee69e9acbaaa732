"""The Selector protocol (scikit-learn shape) and the registry of selectors by name.

A selector stores its parameters in ``__init__`` (nothing else happens there), validates them
and the data in ``fit``, and leaves its learned state in attributes ending in ``_``:
``plan_`` (a Plan), ``selected_`` (the chosen sample ids, for subset methods), ``weights_``
(optional) and ``selection_seconds_`` (its own cost, booked in the compute ledger).
"""

from __future__ import annotations

import inspect
import math
import numbers
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from curation.errors import CurationError
from curation.selection.plans import Plan, StaticPlan


@dataclass
class SelectionInput:
    """What selectors see of a data set version's training split, row-aligned arrays."""

    version_id: int
    sample_ids: np.ndarray  # int64, sorted
    labels: np.ndarray  # int
    features: np.ndarray | None = None  # (N, D) float32 raw features
    embeddings: np.ndarray | None = None  # (N, E) float32 from a proxy model
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # per-sample scores by name
    gradients: np.ndarray | None = None  # (N, G) last-layer gradients (CRAIG)
    read_features: Callable[[], np.ndarray] | None = field(default=None, repr=False, compare=False)  # lazily

    def __post_init__(self):
        self.sample_ids = np.asarray(self.sample_ids, dtype=np.int64)
        self.labels = np.asarray(self.labels)
        for name, array in [
            ("labels", self.labels),
            ("features", self.features),
            ("embeddings", self.embeddings),
            ("gradients", self.gradients),
            *self.scores.items(),
        ]:
            if array is not None and len(array) != len(self.sample_ids):
                raise CurationError(
                    f"{name} has {len(array)} rows for {len(self.sample_ids)} samples", "give one row per sample"
                )

    @property
    def n(self) -> int:
        return len(self.sample_ids)

    def matrix(self, name: str) -> np.ndarray:
        """A finite float32 matrix (features, embeddings or gradients), or a one-line error."""
        value = getattr(self, name)
        if value is None and name == "features" and self.read_features is not None:
            self.features = value = self.read_features()  # read only by the methods that use them
        if value is None:
            raise CurationError(
                f"this selector needs {name}", f"score the version first (`curation score`) or pass {name}"
            )
        value = np.asarray(value, dtype=np.float32)
        if value.ndim != 2:
            value = value.reshape(len(value), -1)
        bad = ~np.isfinite(value).all(axis=1)
        if bad.any():
            raise CurationError(
                f"{name} have NaN or inf in {int(bad.sum())} rows (first: sample_id "
                f"{int(self.sample_ids[np.flatnonzero(bad)[0]])})",
                "rescore or drop those samples",
            )
        return value

    def score(self, name: str) -> np.ndarray:
        """A finite per-sample score, or a one-line error."""
        if name not in self.scores:
            have = ", ".join(sorted(self.scores)) or "none"
            raise CurationError(
                f"score {name!r} not available (have: {have})",
                "run `curation score <version>` and pass its id with --score-set",
            )
        value = np.asarray(self.scores[name], dtype=np.float64)
        bad = ~np.isfinite(value)
        if bad.any():
            raise CurationError(
                f"score {name!r} is NaN or inf for {int(bad.sum())} samples "
                f"(first: sample_id {int(self.sample_ids[np.flatnonzero(bad)[0]])})",
                "rescore or drop those samples",
            )
        return value


def resolve_budget(budget: int | float, n: int) -> int:
    """A budget as a count (int, 1..N) or a fraction of N (float in (0, 1]); a one-line error otherwise."""
    if isinstance(budget, (bool, np.bool_)) or not isinstance(budget, numbers.Real):
        raise CurationError(f"budget must be a number, got {budget!r}", "give a count like 500 or a fraction like 0.1")
    if isinstance(budget, (float, np.floating)):
        if not 0 < budget <= 1:
            raise CurationError(f"budget fraction {budget} is outside (0, 1]", "give a fraction like 0.1 or a count")
        return max(1, math.ceil(float(budget) * n))
    k = int(budget)
    if k < 1:
        raise CurationError(f"budget must be at least 1, got {k}", "give a positive count or a fraction in (0, 1]")
    if k > n:
        raise CurationError(f"budget {k} is larger than the {n} samples available", f"give a budget of at most {n}")
    return k


def check_seed(seed) -> None:
    """Seeds are non-negative integers (recorded with every plan)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CurationError(f"seed must be a non-negative integer, got {seed!r}", "give a seed like 0")


class Method:
    """What every registered method shares: parameters stored by ``__init__``, listed and set by name.

    ``online`` says where the method decides: False, it produces a Plan before training (``Selector``);
    True, it decides inside the Trainer's batch loop (``curation.selection.online.OnlineMethod``).
    """

    name: ClassVar[str]
    online: ClassVar[bool] = False

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind == p.POSITIONAL_OR_KEYWORD]

    @classmethod
    def defaults(cls) -> dict:
        """Constructor parameters and their defaults (None where a parameter has no default)."""
        sig = inspect.signature(cls.__init__)
        return {
            name: (None if sig.parameters[name].default is inspect.Parameter.empty else sig.parameters[name].default)
            for name in cls._param_names()
        }

    @classmethod
    def at_ratio(cls, ratio: float) -> dict:
        """The parameters that size this method to a per-epoch share ``ratio`` of the train split."""
        return {key: ratio for key in ("ratio", "budget") if key in cls.defaults()}

    def get_params(self, deep: bool = True) -> dict:
        """The constructor parameters (feeds mlflow.log_params and the catalog row)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> Method:
        unknown = set(params) - set(self._param_names())
        if unknown:
            raise CurationError(
                f"unknown parameters for {self.name}: {sorted(unknown)}", f"use {', '.join(self._param_names())}"
            )
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"


class Selector(Method, ABC):
    """Base of every offline selection method: ``fit`` makes the Plan the Trainer follows."""

    generated: ClassVar[bool] = False  # True when the plan is re-derived per epoch from a seed

    def fit(self, data: SelectionInput) -> Selector:
        """Select; sets ``plan_``, ``selected_``/``weights_`` where they apply, ``selection_seconds_``."""
        if data.n == 0:
            raise CurationError("no samples to select from", "check the version and its train split")
        start = time.perf_counter()
        self.plan_ = self._fit(data)
        self.selection_seconds_ = time.perf_counter() - start
        return self

    @abstractmethod
    def _fit(self, data: SelectionInput) -> Plan:
        """Compute the plan; subclasses set their own learned attributes."""

    def _subset(self, data: SelectionInput, rows: np.ndarray, weights: np.ndarray | None = None) -> Plan:
        """A static plan from chosen row positions (the common case for coreset methods)."""
        rows = np.asarray(rows, dtype=np.int64)
        self.selected_ = data.sample_ids[rows]
        self.weights_ = None if weights is None else np.asarray(weights, dtype=np.float32)
        return StaticPlan(data.version_id, self.selected_, self.weights_, method=self.name)


SELECTORS: dict[str, type[Method]] = {}


def register_selector(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method (offline selector or online) available by its ``name``."""
    SELECTORS[cls.name] = cls
    return cls


def make_selector(name: str, **params) -> Method:
    """A method by registered name, with parameters; one-line errors for unknown names or params."""
    from curation.selection import methods  # noqa: F401 - registers the built-in selectors

    if name not in SELECTORS:
        raise CurationError(f"unknown selection method {name!r}", f"choose one of: {', '.join(sorted(SELECTORS))}")
    cls = SELECTORS[name]
    unknown = set(params) - set(cls._param_names())
    if unknown:
        raise CurationError(
            f"unknown parameters for {name}: {sorted(unknown)}",
            f"{name} takes {', '.join(cls._param_names()) or 'no parameters'}",
        )
    return cls(**params)
