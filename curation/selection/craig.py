"""CRAIG (Mirzasoleiman et al. 2020): weighted medoids of last-layer gradients, per class.

Inside each class, facility location on the gradients picks medoids (the class's share of the
budget by largest remainder, at least one each, so every class is represented). Each medoid's
weight is the size of its cluster: the number of class points whose nearest medoid in gradient space
(= most similar, the kernel being monotone in distance) it is. Weights of a class sum to its size,
so the weighted subset gradient estimates the full gradient sum.
"""

from __future__ import annotations

import numpy as np

from curation.selection.base import SelectionInput, Selector, check_seed, register_selector, resolve_budget
from curation.selection.coresets import class_quotas
from curation.selection.knn import check_k_neighbors
from curation.selection.plans import Plan
from curation.selection.submodular import check_dense_max, check_optimizer, maximize, similarity_for


def cluster_sizes(points: np.ndarray, medoids: np.ndarray) -> np.ndarray:
    """How many of ``points`` have each medoid (a row of ``points``) as their nearest, in exact L2.

    A medoid always belongs to its own cluster (weights are >= 1 even among duplicated points);
    other ties go to the first medoid.
    """
    points = np.asarray(points, dtype=np.float64)
    centers = points[medoids]
    norms = np.einsum("ij,ij->i", centers, centers)
    nearest = np.empty(len(points), dtype=np.int64)
    step = max(1, (1 << 22) // len(medoids))
    for start in range(0, len(points), step):
        distance = norms[None, :] - 2.0 * (points[start : start + step] @ centers.T)  # + |p|^2, same for all
        nearest[start : start + step] = np.argmin(distance, axis=1)
    nearest[medoids] = np.arange(len(medoids))
    return np.bincount(nearest, minlength=len(medoids))


@register_selector
class Craig(Selector):
    """CRAIG: per-class facility location on last-layer gradients, medoids weighted by cluster size.

    Learned: ``weights_`` (cluster sizes, aligned with ``selected_``), ``objective_`` (the sum of
    the per-class facility-location values).
    """

    name = "craig"

    def __init__(
        self,
        budget: int | float = 0.1,
        seed: int = 0,
        optimizer: str = "lazy",
        epsilon: float = 0.001,
        k_neighbors: int = 10,
        dense_max: int = 20_000,
    ):
        self.budget = budget
        self.seed = seed
        self.optimizer = optimizer
        self.epsilon = epsilon
        self.k_neighbors = k_neighbors
        self.dense_max = dense_max

    def _fit(self, data: SelectionInput) -> Plan:
        check_seed(self.seed)
        check_optimizer(self.optimizer, self.epsilon)
        check_k_neighbors(self.k_neighbors)
        check_dense_max(self.dense_max)
        k = resolve_budget(self.budget, data.n)
        gradients = data.matrix("gradients")
        classes, quotas = class_quotas(data.labels, k, at_least_one=True)
        rows, weights, self.objective_ = [], [], 0.0
        for label, quota in zip(classes, quotas):
            members = np.flatnonzero(data.labels == label)
            g = gradients[members]
            result = maximize(
                similarity_for(g, self.k_neighbors, self.dense_max),
                int(quota),
                self.optimizer,
                float(self.epsilon),
                int(self.seed),
            )
            rows.append(members[result.rows])
            weights.append(cluster_sizes(g, result.rows))
            self.objective_ += result.objective
        return self._subset(data, np.concatenate(rows), np.concatenate(weights))
