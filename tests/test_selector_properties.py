"""Properties every coreset / submodular selector keeps, on any input hypothesis can think of.

Exactly k distinct ids from the input, the same for the same seed; one-line errors for a budget of 0
or above N and for NaN in what the selector reads; tiny N, one class, duplicated points.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from curation.errors import CurationError
from curation.selection.base import SelectionInput, make_selector

SELECTORS = {
    "topk": ("topk", {"score": "loss"}, "scores"),
    "topk-smallest": ("topk", {"score": "loss", "largest": False}, "scores"),
    "topk-balanced": ("topk-balanced", {"score": "loss"}, "scores"),
    "kcenter": ("kcenter", {}, "embeddings"),
    "fl-naive": ("facility-location", {"optimizer": "naive"}, "embeddings"),
    "fl-lazy": ("facility-location", {"optimizer": "lazy"}, "embeddings"),
    "fl-stochastic": ("facility-location", {"optimizer": "stochastic"}, "embeddings"),
    "fl-lazy-knn": ("facility-location", {"optimizer": "lazy", "dense_max": 0, "k_neighbors": 3}, "embeddings"),
    "fl-stochastic-knn": ("facility-location", {"optimizer": "stochastic", "dense_max": 0}, "embeddings"),
    "craig": ("craig", {}, "gradients"),
    "craig-knn": ("craig", {"dense_max": 0, "k_neighbors": 2}, "gradients"),
    "pairwise-density": ("pairwise", {"k_neighbors": 3}, "embeddings"),
    "pairwise-score": ("pairwise", {"utility": "loss", "beta": 2.0}, "embeddings"),
}


@st.composite
def inputs(draw, n=st.integers(1, 40)):
    """Small data with duplicated points (a coarse grid), tied scores and one to three classes."""
    n = draw(n)
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    grid = draw(st.sampled_from([1, 2, 4, 1000]))  # 1: every point the same
    points = rng.integers(0, grid, size=(n, 2)).astype(np.float32)
    classes = draw(st.integers(1, 3))
    scores = rng.integers(0, draw(st.sampled_from([1, 3, 1000])), size=n).astype(np.float64)
    return SelectionInput(
        1,
        np.sort(rng.choice(10 * n + 5, size=n, replace=False)),
        rng.integers(0, classes, size=n),
        embeddings=points,
        gradients=points[:, ::-1].copy(),
        scores={"loss": scores},
    )


def fit(name: str, data: SelectionInput, budget, seed: int = 0):
    method, params, _ = SELECTORS[name]
    return make_selector(method, budget=budget, seed=seed, **params).fit(data)


@pytest.mark.parametrize("name", sorted(SELECTORS))
@given(data=inputs(), budget_pick=st.floats(0, 1), as_fraction=st.booleans(), seed=st.integers(0, 1000))
@hsettings(max_examples=25, deadline=None)
def test_exactly_k_distinct_input_ids_and_deterministic(name, data, budget_pick, as_fraction, seed):
    if as_fraction:
        budget = max(budget_pick, 1e-6)
        k = max(1, math.ceil(budget * data.n))
    else:
        budget = k = 1 + int(budget_pick * (data.n - 1))
    classes = len(np.unique(data.labels))
    if name.startswith("craig") and k < classes:
        with pytest.raises(CurationError, match="below the"):
            fit(name, data, budget, seed)
        return
    first = fit(name, data, budget, seed)
    again = fit(name, data, budget, seed)
    assert len(first.selected_) == k and len(np.unique(first.selected_)) == k
    assert np.isin(first.selected_, data.sample_ids).all()
    assert np.array_equal(first.selected_, again.selected_)
    assert np.array_equal(first.plan_.ids(0), first.selected_)
    if name.startswith("craig"):
        assert np.array_equal(first.weights_, again.weights_) and first.weights_.sum() == data.n
    else:
        assert first.weights_ is None


@pytest.mark.parametrize("name", sorted(SELECTORS))
@given(data=inputs())
@hsettings(max_examples=10, deadline=None)
def test_budget_zero_or_above_n_is_a_one_line_error(name, data):
    for budget, message in [(0, "at least 1"), (data.n + 1, "larger than"), (0.0, "outside"), (1.5, "outside")]:
        with pytest.raises(CurationError, match=message) as error:
            fit(name, data, budget)
        assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", sorted(SELECTORS))
@given(data=inputs(n=st.integers(2, 30)), row=st.integers(0, 10_000), bad=st.sampled_from([np.nan, np.inf]))
@hsettings(max_examples=10, deadline=None)
def test_nan_or_inf_in_what_a_selector_reads_is_a_one_line_error(name, data, row, bad):
    _, _, reads = SELECTORS[name]
    row %= data.n
    if reads == "scores":
        data.scores["loss"][row] = bad
    else:
        getattr(data, reads)[row, 0] = bad
    with pytest.raises(CurationError, match="NaN or inf") as error:
        fit(name, data, data.n)
    assert f"sample_id {data.sample_ids[row]}" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("name", sorted(SELECTORS))
@pytest.mark.parametrize("n", [1, 2, 3])
def test_tiny_inputs_every_budget(name, n):
    data = SelectionInput(
        1,
        np.arange(n) + 10,
        np.arange(n) % 2,
        embeddings=np.arange(2 * n, dtype=np.float32).reshape(n, 2),
        gradients=np.ones((n, 2), np.float32),
        scores={"loss": np.arange(n, dtype=float)},
    )
    for k in range(1, n + 1):
        if name.startswith("craig") and k < min(n, 2):
            continue
        first, again = fit(name, data, k).selected_, fit(name, data, k).selected_
        assert np.array_equal(first, again) and len(set(first.tolist())) == k


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_one_class_of_identical_points(name):
    n = 12
    data = SelectionInput(
        1,
        np.arange(n),
        np.zeros(n, int),
        embeddings=np.ones((n, 3), np.float32),
        gradients=np.ones((n, 3), np.float32),
        scores={"loss": np.ones(n)},
    )
    selector = fit(name, data, 5)
    assert len(np.unique(selector.selected_)) == 5
    if name.startswith("craig"):
        assert selector.weights_.sum() == n and selector.weights_.min() >= 1
