"""Soft sampling, RS2 and uniform subsets against docs/papers.md's formulas; exact statistics at any N."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from curation.errors import CurationError
from curation.metrics.coverage import (
    CoverageTracker,
    expected_epochs_to_cover_all,
    plan_statistics,
    poisson_pmf,
    rs2_coverage,
    soft_coverage,
)
from curation.selection.base import SelectionInput, make_selector
from curation.selection.sampling import BLOCK, SampledPlan, epoch_positions, per_epoch

SOFT_VALUES = {1: 0.0952, 3: 0.2592, 10: 0.6321, 30: 0.9502}  # docs/papers.md, r = 0.1
RS2_VALUES = {1: 0.1, 3: 0.271, 10: 0.6513, 30: 0.9576}


def test_theory_matches_papers_table():
    for k, value in SOFT_VALUES.items():
        assert soft_coverage(0.1, k) == pytest.approx(value, abs=1e-4)
        assert soft_coverage(0.1, k, n=10**6) == pytest.approx(value, abs=1e-4)
    for k, value in RS2_VALUES.items():
        assert rs2_coverage(0.1, k) == pytest.approx(value, abs=1e-4)
    assert expected_epochs_to_cover_all(10**6, 0.1) == pytest.approx((math.log(10**6) + 0.5772) / 0.1, rel=1e-4)


@pytest.mark.parametrize("n", [20_000, 200_000, BLOCK * 2 + 12_345])  # one block, many blocks, a partial block
@pytest.mark.parametrize("ratio", [0.05, 0.1, 0.3])
def test_measured_coverage_within_half_a_point(n, ratio):
    soft = plan_statistics("soft", n, ratio, 30, seed=7)
    rs2 = plan_statistics("rs2", n, ratio, 30, seed=7)
    for k in (1, 3, 10, 30):
        assert soft["coverage"][k - 1] == pytest.approx(soft_coverage(ratio, k, n), abs=0.005)
        assert rs2["coverage"][k - 1] == pytest.approx(rs2_coverage(ratio, k), abs=0.005)
    assert soft["draws"] == rs2["draws"] == 30 * per_epoch(n, ratio)
    assert sum(soft["occupancy"]) == n and sum(i * c for i, c in enumerate(soft["occupancy"])) == soft["draws"]


def test_occupancy_is_close_to_poisson():
    n, ratio, epochs = 300_000, 0.1, 10
    stats = plan_statistics("soft", n, ratio, epochs, seed=3)
    measured = np.array(stats["occupancy"], dtype=float) / n
    expected = poisson_pmf(ratio * epochs, len(measured) - 1)
    assert np.abs(measured - expected).max() < 0.005
    chi2 = (((measured - expected) * n) ** 2 / (expected * n))[:6].sum()
    assert chi2 < 20.5  # chi-square, 5 dof, p = 0.001


def test_statistics_agree_with_the_plan_itself():
    n, ratio = 5_000, 0.2
    plan = SampledPlan(1, np.arange(n) * 10, "soft", ratio, seed=11)
    tracker = CoverageTracker(n, labels=np.arange(n) % 3)
    for epoch in range(6):
        summary = tracker.update(plan.positions(epoch))
    stats = plan_statistics("soft", n, ratio, 6, seed=11)
    assert summary["coverage"] == pytest.approx(stats["coverage"][-1])
    assert tracker.occupancy().tolist() == stats["occupancy"]
    assert set(summary["coverage_per_class"]) == {0, 1, 2}


def test_plans_rederive_bit_for_bit_and_differ_per_epoch():
    data = SelectionInput(4, np.arange(0, 3000, 3), np.zeros(1000, int))
    a = make_selector("soft", ratio=0.3, seed=5).fit(data).plan_
    b = make_selector("soft", ratio=0.3, seed=5).fit(data).plan_
    assert np.array_equal(a.ids(2), b.ids(2)) and not np.array_equal(a.ids(2), a.ids(3))
    assert len(a.ids(0)) == 300 and np.isin(a.ids(0), data.sample_ids).all()
    assert len(np.unique(a.ids(0))) < 300  # with replacement: duplicates happen (P(no dup) ~ 1e-20)
    r = make_selector("rs2", ratio=0.3, seed=5).fit(data).plan_
    assert len(np.unique(r.ids(0))) == 300


def test_large_plan_is_streamed_in_blocks():
    n = 10**9
    m = per_epoch(n, 0.001)
    sizes = [len(chunk) for chunk in epoch_positions("soft", 0, 0, n, m)]
    assert sum(sizes) == m and max(sizes) < m / 10
    chunk = next(epoch_positions("soft", 0, 0, n, m))
    assert chunk.min() >= 0 and chunk.max() < n


@hsettings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), ratio=st.floats(0.01, 1.0), seed=st.integers(0, 2**32 - 1))
def test_sampling_selectors_on_tiny_inputs(n, ratio, seed):
    data = SelectionInput(1, np.arange(n) + 100, np.zeros(n, int))
    for name in ("soft", "rs2"):
        plan = make_selector(name, ratio=ratio, seed=seed).fit(data).plan_
        ids = plan.ids(0)
        assert len(ids) == math.ceil(ratio * n - 1e-9) and np.isin(ids, data.sample_ids).all()
    k = max(1, n // 2)
    uniform = make_selector("uniform", budget=k, seed=seed).fit(data)
    assert len(np.unique(uniform.selected_)) == k


@pytest.mark.parametrize(
    "name, params, match",
    [
        ("soft", {"ratio": 0.0}, "outside"),
        ("soft", {"ratio": 1.5}, "outside"),
        ("rs2", {"seed": -1}, "seed"),
        ("uniform", {"budget": 0}, "at least 1"),
        ("uniform", {"budget": 11}, "larger than"),
        ("uniform", {"budget": "10"}, "must be a number"),
        ("soft", {"budget": 3}, "unknown parameters"),
        ("nope", {}, "unknown selection method"),
    ],
)
def test_bad_parameters_are_one_line_errors(name, params, match):
    data = SelectionInput(1, np.arange(10), np.zeros(10, int))
    with pytest.raises(CurationError, match=match) as info:
        make_selector(name, **params).fit(data)
    assert "\n" not in str(info.value)


def test_get_params_round_trip():
    selector = make_selector("soft", ratio=0.2, seed=3)
    assert selector.get_params() == {"ratio": 0.2, "seed": 3}
    assert selector.set_params(ratio=0.4).ratio == 0.4
