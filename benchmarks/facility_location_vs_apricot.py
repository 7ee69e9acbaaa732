"""Facility location, lazy greedy: curation vs apricot-select, side by side on the same similarity.

Sparse: N MNIST-1D points (40 features), a 10% budget, the symmetric 10-NN graph with self loops
(curation.selection.knn.knn_graph: Gaussian kernel, float64 CSR, int32 indices), built once and passed
as the same matrix to both (apricot: metric='precomputed'). Dense: the first 16,000 of those points
and their full kernel matrix, one float64 array passed to both. Both objectives are computed by
curation.selection.submodular.objective. Runs alternate between ours, apricot as shipped (it compiles
its numba kernels inside every ``fit``) and apricot with its kernels compiled once; the median of
``--repeats`` runs is reported.
"""

from __future__ import annotations

import functools
import math
import statistics
import threading
import time

import numpy as np
import psutil

from benchmarks._common import parser, peak_rss_mb, write_result

TARGET_SPEEDUP = 2.0
KERNELS = ("calculate_gains", "calculate_gains_sparse", "calculate_gains_sieve")  # apricot builds them per fit


class PeakMemory:
    """Peak resident memory above the level at entry, sampled every 5 ms while the block runs."""

    def __enter__(self):
        self._process = psutil.Process()
        self._start = self._peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.extra_mb = round((self._peak - self._start) / 2**20, 1)


def mnist1d_features(n: int, seed: int) -> np.ndarray:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = int(math.ceil(n / 10) * 10), seed
    data = make_dataset(args)
    return np.concatenate([data["x"], data["x_test"]])[:n].astype(np.float32)


class CachedKernels:
    """While active, apricot reuses numba kernels compiled once instead of compiling them in every fit."""

    def __init__(self):
        from apricot.functions import facilityLocation

        self.module = facilityLocation
        self.original = {name: getattr(facilityLocation, name) for name in KERNELS}
        self.cached = {name: functools.cache(factory) for name, factory in self.original.items()}

    def __enter__(self):
        for name, factory in self.cached.items():
            setattr(self.module, name, factory)

    def __exit__(self, *exc):
        for name, factory in self.original.items():
            setattr(self.module, name, factory)


def side_by_side(similarity, k: int, repeats: int) -> dict:
    """Alternating timed runs of our lazy greedy, apricot's as shipped and apricot's with cached kernels."""
    from apricot import FacilityLocationSelection

    from curation.selection.submodular import maximize, objective

    def ours():
        return maximize(similarity, k, "lazy").rows

    def apricot():
        return np.asarray(FacilityLocationSelection(k, metric="precomputed", optimizer="lazy").fit(similarity).ranking)

    warm = CachedKernels()
    with warm:  # compile once, outside the timed runs
        FacilityLocationSelection(1, metric="precomputed", optimizer="lazy").fit(similarity[:2, :2])

    def apricot_warm():
        with warm:
            return apricot()

    systems = {"curation": ours, "apricot": apricot, "apricot-warm": apricot_warm}
    runs = {name: [] for name in systems}
    memory, rows = {}, {}
    for _ in range(repeats):
        for name, fn in systems.items():
            with PeakMemory() as peak:
                start = time.perf_counter()
                rows[name] = fn()
                runs[name].append(time.perf_counter() - start)
            memory[name] = max(memory.get(name, 0.0), peak.extra_mb)
    ours_set = set(rows["curation"].tolist())
    return {
        name: {
            "seconds": statistics.median(times),
            "runs": [round(t, 3) for t in times],
            "objective": objective(similarity, rows[name]),
            "extra_rss_mb": memory[name],
            "same_selection": len(ours_set & set(rows[name].tolist())) / k,
        }
        for name, times in runs.items()
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dense-n", type=int, default=16_000)
    p.add_argument("--budget", type=float, default=0.1)
    p.add_argument("--k-neighbors", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    n, dense_n = (10_000, 2_000) if args.quick else (args.n, args.dense_n)

    from curation.selection.knn import dense_similarity, knn_graph

    start = time.perf_counter()
    x = mnist1d_features(n, args.seed)
    data_s = time.perf_counter() - start
    start = time.perf_counter()
    graph = knn_graph(x, args.k_neighbors, self_loops=True)
    graph_s = time.perf_counter() - start
    k = max(1, math.ceil(args.budget * n))
    sparse = side_by_side(graph, k, args.repeats)
    del graph

    start = time.perf_counter()
    dense = dense_similarity(x[:dense_n], args.k_neighbors).astype(np.float64)
    dense_s = time.perf_counter() - start
    dense_k = max(1, math.ceil(args.budget * dense_n))
    full = side_by_side(dense, dense_k, args.repeats)
    del dense
    results, ratios = [], {}
    for label, measured, size in (("sparse", sparse, n), ("dense", full, dense_n)):
        for system, m in measured.items():
            results.append(
                {
                    "system": f"{system}-lazy ({label}, n={size})",
                    "seconds": round(m["seconds"], 3),
                    "runs": m["runs"],
                    "objective": round(m["objective"], 4),
                    "extra_rss_mb": m["extra_rss_mb"],
                    "same_selection_as_ours": round(m["same_selection"], 4),
                }
            )
        ours = measured["curation"]
        ratios[f"speedup_vs_apricot_{label}"] = round(measured["apricot"]["seconds"] / ours["seconds"], 2)
        ratios[f"speedup_vs_apricot_warm_{label}"] = round(measured["apricot-warm"]["seconds"] / ours["seconds"], 2)
        ratios[f"objective_vs_apricot_{label}"] = round(ours["objective"] / measured["apricot"]["objective"], 6)
    targets = {}
    for label in ("sparse", "dense"):
        targets[f"speedup_vs_apricot_{label}"] = f">= {TARGET_SPEEDUP}"
        targets[f"objective_vs_apricot_{label}"] = ">= 1.0 (6 digits)"
    missed = [name for name, target in targets.items() if ratios[name] < float(target.split()[1])]
    slow_warm = {
        label: ratios[f"speedup_vs_apricot_warm_{label}"]
        for label in ("sparse", "dense")
        if ratios[f"speedup_vs_apricot_warm_{label}"] < TARGET_SPEEDUP
    }
    notes = (
        "apricot: as shipped, it compiles its numba kernels (gains, sieve) inside every fit, which a user pays "
        "on every call: the targets are against it (as the reference 5.7 s / 9.5 s were). apricot-warm: the "
        "same code with the kernels compiled once before the timed runs (a patch in this benchmark), i.e. its "
        "selection time alone, reported for context. "
    )
    if slow_warm:
        notes += (
            f"Against apricot-warm the speedup is below {TARGET_SPEEDUP} for "
            f"{', '.join(f'{label} ({value})' for label, value in slow_warm.items())}: on a dense matrix both "
            "re-evaluate the same stale bounds (each a pass over n similarities); ours saves apricot's "
            "per-evaluation Python overhead, not evaluations. "
        )
    notes += (
        "Both run exact lazy greedy on the same matrix, so objectives agree up to ties. Not timed: MNIST-1D "
        f"generation {data_s:.1f} s, 10-NN graph (faiss, exact) {graph_s:.1f} s, dense kernel matrix "
        f"{dense_s:.1f} s. extra_rss_mb: peak resident memory above the level before each fit. Shared 2-core "
        "machine with other jobs running: compare the ratios, not the seconds."
    )
    if missed:
        notes = f"Missed as measured: {', '.join(missed)}. " + notes
    write_result(
        "facility_location_vs_apricot",
        {
            "n": n,
            "budget": k,
            "dense_n": dense_n,
            "dense_budget": dense_k,
            "k_neighbors": args.k_neighbors,
            "similarity": "exp(-d2/sigma), sigma = median squared 10-NN distance; symmetric, self loops",
            "optimizer": "lazy",
            "repeats": args.repeats,
            "seed": args.seed,
            "process_peak_rss_mb": peak_rss_mb(),
        },
        results,
        ratios,
        targets,
        not missed,
        notes=notes,
        out=args.out,
        quick=args.quick,
    )


if __name__ == "__main__":
    main()
