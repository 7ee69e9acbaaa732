"""Top-k, class-balanced top-k (largest remainder) and k-center greedy."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from curation.errors import CurationError
from curation.selection.base import SelectionInput, make_selector
from curation.selection.coresets import class_quotas, kcenter_greedy, largest_remainder


def scored(n: int, seed: int, classes: int = 3) -> SelectionInput:
    rng = np.random.default_rng(seed)
    return SelectionInput(
        1,
        np.arange(n) * 2 + 7,
        rng.integers(classes, size=n),
        embeddings=rng.normal(size=(n, 3)).astype(np.float32),
        scores={"loss": rng.random(n)},
    )


def test_topk_takes_the_largest_or_smallest_scores():
    data = scored(500, 0)
    loss = data.scores["loss"]
    high = make_selector("topk", budget=0.1, score="loss").fit(data)
    low = make_selector("topk", budget=50, score="loss", largest=False).fit(data)
    assert set(high.selected_) == set(data.sample_ids[np.argsort(-loss)[:50]])
    assert set(low.selected_) == set(data.sample_ids[np.argsort(loss)[:50]])
    assert high.plan_.weights(0) is None and len(high.plan_.ids(3)) == 50


def test_topk_breaks_ties_in_a_seeded_order():
    data = SelectionInput(1, np.arange(100), np.zeros(100, int), scores={"s": np.r_[np.ones(10), np.zeros(90)]})
    picks = {seed: make_selector("topk", budget=15, score="s", seed=seed).fit(data).selected_ for seed in range(5)}
    for ids in picks.values():
        assert set(range(10)) <= set(ids)  # every top score first, then 5 of the tied zeros
    assert np.array_equal(picks[0], make_selector("topk", budget=15, score="s", seed=0).fit(data).selected_)
    assert len({tuple(sorted(ids)) for ids in picks.values()}) > 1


@given(sizes=st.lists(st.integers(0, 50), min_size=1, max_size=8), data=st.data())
@hsettings(max_examples=200, deadline=None)
def test_largest_remainder_is_proportional_and_exact(sizes, data):
    sizes = np.array(sizes)
    k = data.draw(st.integers(0, int(sizes.sum())))
    quotas = largest_remainder(sizes, k)
    assert quotas.sum() == k and np.all(quotas <= sizes) and np.all(quotas >= 0)
    if sizes.sum():
        assert np.all(np.abs(quotas - k * sizes / sizes.sum()) < 1)  # Hamilton: floor or ceil of the exact share


@given(labels=st.lists(st.integers(0, 6), min_size=1, max_size=80), data=st.data())
@hsettings(max_examples=200, deadline=None)
def test_class_quotas_with_a_medoid_each_stay_valid(labels, data):
    labels = np.array(labels)
    classes, sizes = np.unique(labels, return_counts=True)
    k = data.draw(st.integers(len(classes), len(labels)))
    _, quotas = class_quotas(labels, k, at_least_one=True)
    assert quotas.sum() == k and np.all(quotas >= 1) and np.all(quotas <= sizes)


def test_largest_remainder_known_splits():
    assert largest_remainder(np.array([5, 3, 2]), 5).tolist() == [3, 1, 1]  # 2.5, 1.5, 1: tie to the larger
    assert largest_remainder(np.array([1, 1, 1]), 2).tolist() == [1, 1, 0]  # equal: the earlier groups
    assert largest_remainder(np.array([60, 30, 10]), 10).tolist() == [6, 3, 1]


def test_class_quotas_with_a_medoid_per_class():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    assert class_quotas(labels, 10)[1].tolist() == [9, 1, 0]
    assert class_quotas(labels, 10, at_least_one=True)[1].tolist() == [8, 1, 1]
    with pytest.raises(CurationError, match="below the 3 classes"):
        class_quotas(labels, 2, at_least_one=True)


def test_balanced_topk_is_topk_inside_each_class():
    data = scored(1000, 1, classes=4)
    selector = make_selector("topk-balanced", budget=0.05, score="loss").fit(data)
    rows = np.searchsorted(data.sample_ids, selector.selected_)
    classes, quotas = class_quotas(data.labels, 50)
    assert selector.quotas_ == dict(zip(classes.tolist(), quotas.tolist()))
    for label, quota in selector.quotas_.items():
        members = np.flatnonzero(data.labels == label)
        best = members[np.argsort(-data.scores["loss"][members])[:quota]]
        assert set(rows[data.labels[rows] == label]) == set(best)


def test_kcenter_each_center_is_the_farthest_point_so_far():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    rows, radius = kcenter_greedy(x, 25, first=17)
    assert rows[0] == 17 and len(set(rows.tolist())) == 25
    distance = np.sqrt(((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1))
    for i in range(1, 25):
        nearest = distance[:, rows[:i]].min(axis=1)
        assert nearest[rows[i]] == pytest.approx(nearest.max(), rel=1e-4)
    assert radius == pytest.approx(distance[:, rows].min(axis=1).max(), rel=1e-4)


def test_kcenter_is_within_twice_the_optimal_radius():
    rng = np.random.default_rng(3)
    for trial in range(5):
        x = rng.normal(size=(10, 2)).astype(np.float32)
        distance = np.sqrt(((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1))
        for k in (1, 2, 3):
            optimum = min(distance[:, list(c)].min(axis=1).max() for c in itertools.combinations(range(10), k))
            _, radius = kcenter_greedy(x, k, first=trial)
            assert radius <= 2 * optimum + 1e-5


def test_kcenter_selector_first_center_follows_the_seed():
    data = scored(400, 4)
    a = make_selector("kcenter", budget=40, seed=1).fit(data)
    assert np.array_equal(a.selected_, make_selector("kcenter", budget=40, seed=1).fit(data).selected_)
    assert a.radius_ > 0
    firsts = {make_selector("kcenter", budget=1, seed=s).fit(data).selected_[0] for s in range(6)}
    assert len(firsts) > 1


def test_coreset_parameter_errors_are_one_line():
    data = scored(20, 5)
    with pytest.raises(CurationError, match="score 'el2n' not available"):
        make_selector("topk", score="el2n").fit(data)
    with pytest.raises(CurationError, match="largest must be"):
        make_selector("topk-balanced", largest="yes").fit(data)
    with pytest.raises(CurationError, match="seed must be"):
        make_selector("kcenter", seed=-1).fit(data)
    with pytest.raises(CurationError, match="unknown source"):
        make_selector("kcenter", source="scores").fit(data)
