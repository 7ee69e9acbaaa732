"""The pairwise submodular objective (docs/papers.md section 4): gains, bounds, objective and centralized greedy."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from curation.errors import CurationError
from curation.selection.base import SelectionInput, make_selector
from curation.selection.knn import knn_graph
from curation.selection.pairwise import density, gain_bounds, gains, greedy, objective


def random_graph(n: int, seed: int, degree: int = 4) -> sp.csr_matrix:
    x = np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)
    return knn_graph(x, degree)


def brute_objective(graph: sp.csr_matrix, utility, rows, alpha, beta) -> float:
    dense, rows = graph.toarray(), list(rows)
    pairs = sum(dense[v, w] for i, v in enumerate(rows) for w in rows[i + 1 :])
    return alpha * sum(utility[v] for v in rows) - beta * pairs


instances = st.tuples(st.integers(2, 30), st.integers(0, 10_000), st.floats(0, 3), st.floats(0, 3))


@given(instance=instances)
@hsettings(max_examples=40, deadline=None)
def test_objective_counts_each_edge_inside_s_once(instance):
    n, seed, alpha, beta = instance
    graph = random_graph(n, seed)
    rng = np.random.default_rng(seed)
    utility = rng.random(n)
    rows = rng.choice(n, size=rng.integers(0, n + 1), replace=False)
    assert objective(graph, utility, rows, alpha, beta) == pytest.approx(
        brute_objective(graph, utility, rows, alpha, beta), abs=1e-9
    )


@given(instance=instances)
@hsettings(max_examples=40, deadline=None)
def test_greedy_gains_are_the_objective_differences(instance):
    n, seed, alpha, beta = instance
    graph = random_graph(n, seed)
    utility = np.random.default_rng(seed).random(n)
    k = max(1, n // 2)
    rows, chosen = greedy(graph, utility, k, alpha, beta, seed=seed)
    assert len(set(rows.tolist())) == k
    values = [objective(graph, utility, rows[:t], alpha, beta) for t in range(k + 1)]
    np.testing.assert_allclose(np.diff(values), chosen, atol=1e-9)
    selected = np.zeros(n, bool)
    for v, gain in zip(rows, chosen):  # each pick has the largest gain among those left
        current = gains(graph, utility, selected, alpha, beta)
        assert gain == pytest.approx(current[~selected].max(), abs=1e-9)
        selected[v] = True


@given(instance=instances)
@hsettings(max_examples=40, deadline=None)
def test_bounds_hold_for_every_point_against_any_subset(instance):
    n, seed, alpha, beta = instance
    graph = random_graph(n, seed)
    rng = np.random.default_rng(seed)
    utility = rng.random(n)
    low, high = gain_bounds(graph, utility, alpha, beta)
    np.testing.assert_allclose(high, alpha * utility)
    np.testing.assert_allclose(low, alpha * utility - beta * np.asarray(graph.sum(axis=1)).ravel())
    for _ in range(10):
        subset = rng.random(n) < rng.random()
        actual = gains(graph, utility, subset, alpha, beta)
        assert np.all(low <= actual + 1e-9) and np.all(actual <= high + 1e-9)
        # points decided consistently with S tighten the bounds, and S still lies between them
        selected = subset & (rng.random(n) < 0.5)
        discarded = ~subset & (rng.random(n) < 0.5)
        tight_low, tight_high = gain_bounds(graph, utility, alpha, beta, selected, discarded)
        assert np.all(low <= tight_low + 1e-9) and np.all(tight_high <= high + 1e-9)
        assert np.all(tight_low <= actual + 1e-9) and np.all(actual <= tight_high + 1e-9)


def test_gain_functions_work_on_a_partition_of_the_rows():
    graph = random_graph(60, 1)
    utility = np.random.default_rng(1).random(60)
    selected = np.zeros(60, bool)
    selected[[3, 17, 41]] = True
    part = np.arange(20, 45)
    np.testing.assert_allclose(
        gains(graph[part], utility[part], selected, 1.0, 2.0), gains(graph, utility, selected, 1.0, 2.0)[part]
    )


def test_density_is_the_mean_neighbour_similarity():
    graph = random_graph(50, 2)
    for v in range(50):
        start, stop = graph.indptr[v], graph.indptr[v + 1]
        assert density(graph)[v] == pytest.approx(graph.data[start:stop].mean())
    assert density(sp.csr_matrix((1, 1))).tolist() == [0.0]


def test_without_redundancy_greedy_is_top_k_by_utility():
    rng = np.random.default_rng(3)
    n = 500
    data = SelectionInput(
        1,
        np.arange(n),
        np.zeros(n, int),
        embeddings=rng.normal(size=(n, 4)).astype(np.float32),
        scores={"loss": rng.random(n)},
    )
    modular = make_selector("pairwise", budget=50, utility="loss", beta=0.0).fit(data)
    top = make_selector("topk", budget=50, score="loss").fit(data)
    assert set(modular.selected_) == set(top.selected_)
    diverse = make_selector("pairwise", budget=50, utility="loss", beta=5.0).fit(data)
    graph = knn_graph(data.embeddings, 10)
    inside = lambda ids: graph[ids][:, ids].nnz  # noqa: E731 - edges kept inside the subset
    assert inside(diverse.ranking_) < inside(modular.ranking_)
    assert diverse.objective_ == pytest.approx(objective(graph, data.scores["loss"], diverse.ranking_, 1.0, 5.0))


def test_pairwise_parameter_errors_are_one_line():
    data = SelectionInput(1, np.arange(10), np.zeros(10, int), embeddings=np.zeros((10, 2), np.float32))
    with pytest.raises(CurationError, match="beta must be"):
        make_selector("pairwise", beta=-1.0).fit(data)
    with pytest.raises(CurationError, match="alpha must be"):
        make_selector("pairwise", alpha=float("nan")).fit(data)
    with pytest.raises(CurationError, match="k_neighbors"):
        make_selector("pairwise", k_neighbors=0).fit(data)
    with pytest.raises(CurationError, match="score 'margin' not available"):
        make_selector("pairwise", utility="margin").fit(data)
    with pytest.raises(CurationError, match="cannot choose"):
        greedy(random_graph(5, 0), np.ones(5), 6, 1.0, 1.0)
