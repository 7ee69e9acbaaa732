"""Beyond one process: scoring on 2 Dask workers against the local path, training with 2 ranks against 1.

The CLI a user runs, on MNIST-1D-shaped versions (40 float features, 10 classes, 20% test; the generator of
``bounded_memory``). For each N (default 1M and 4M rows) the benchmark adds the version, trains one model on a
uniform 1% plan (one epoch), then scores every train row with that model, side by side in one run:
``curation score --model M`` (local: one process, the split held or streamed as ``--data-path auto`` picks,
torch on every core) and ``--engine dask --scheduler`` on a scheduler and 2 workers it starts as separate
processes (``curation.stack``'s services: one task thread each, torch on half the cores each, the task modules
preloaded), the two alternated ``--repeats`` times (default 3) on the same cluster. Reported: each side's
median wall seconds and every run's, the speedup of the medians, the local command's peak PSS and each worker's
peak PSS (its process tree, sampled every 0.2 s while the command runs; the largest over the runs). Targets:
speedup >= 1.6 at the largest N; a worker's peak at the largest N over the smallest <= 1.5 (memory per worker
independent of N).

Training, on the smallest N, for each seed of ``--seeds`` (default 3 untouched ones): one epoch of a uniform
plan (``--train-budget``, default 0.2 of the train split) with 1 process and with ``--nproc 2`` (gloo, each rank
its half of every global batch), same seed and batch size. Reported per seed: wall seconds, scaling efficiency
t1 / (2 t2), and both runs' test accuracy after the epoch; over the seeds the mean and the worst accuracy
difference (target: within 0.5 points) and the median efficiency. ``--parts`` runs the scoring or the training
comparison alone (with ``--out``, beside the other's result).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from functools import partial
from pathlib import Path

from benchmarks._common import measured, parser, write_result
from benchmarks.bounded_memory import FEATURES, write_source

TARGET_SPEEDUP = 1.6
TARGET_WORKER_GROWTH = 1.5
TARGET_POINTS = 0.5
WORKERS = 2


def dask_cluster(home: Path, env: dict):
    """A scheduler and ``WORKERS`` workers as separate processes (the stack's services); (address, processes)."""
    from curation.stack import Processes, dask_scheduler, dask_worker, free_port

    scheduler = dask_scheduler("127.0.0.1", free_port())
    procs = Processes(home / "logs", env)
    procs.start(scheduler, home)
    procs.wait_up([scheduler], 120)
    for i in range(WORKERS):
        procs.start(dask_worker(scheduler.health, "127.0.0.1", i + 1, WORKERS), home)
    from distributed import Client

    with Client(scheduler.health, timeout=60) as client:
        client.wait_for_workers(WORKERS, timeout=120)
    return scheduler.health, procs


def run_cli(env: dict, *command: str, watch: dict | None = None) -> tuple[dict, dict]:
    """``curation <command> --json`` in its own process: (its JSON output, its seconds and peaks)."""
    run = measured([sys.executable, "-m", "curation", *command, "--json"], env, watch)
    return json.loads(run.pop("output")), run


def score_side_by_side(cli, version: str, fit: tuple, tmp: Path, env: dict, repeats: int) -> dict:
    """Score every train row with one model, locally and on 2 Dask workers, alternated ``repeats`` times on one
    cluster: each side's median seconds and largest peaks, every run's seconds, the speedup of the medians and
    whether the score sets are the same bytes."""
    import numpy as np

    small = cli("select", version, "-m", "uniform", "--budget", "0.01")[0]
    model = str(cli("train", version, *fit, "--plan", str(small["id"]))[0]["model_version_id"])
    address, procs = dask_cluster(tmp, env)
    runs, hashes = {"score local": [], "score dask (2 workers)": []}, set()
    try:
        workers = {f"worker {i + 1}": procs.procs[f"dask-worker-{i + 1}"].pid for i in range(WORKERS)}
        for _ in range(repeats):
            local_scores, local = cli("score", version, "--model", model)
            dask_scores, dask = cli(
                "score", version, "--model", model, "--engine", "dask", "--scheduler", address, watch=workers
            )
            runs["score local"].append(local)
            runs["score dask (2 workers)"].append(dask)
            hashes |= {local_scores["content_hash"], dask_scores["content_hash"]}
    finally:
        procs.stop()
    record = {"same score set bytes": len(hashes) == 1}
    for side, measured_runs in runs.items():
        record[side] = {"seconds": round(float(np.median([r["seconds"] for r in measured_runs])), 2)} | {
            key: max(r[key] for r in measured_runs) for key in measured_runs[0] if key.endswith("peak_mb")
        }
        record[side]["runs (seconds)"] = [r["seconds"] for r in measured_runs]
    record["speedup"] = round(record["score local"]["seconds"] / record["score dask (2 workers)"]["seconds"], 3)
    return record


def train_side_by_side(cli, version: str, same: tuple, seeds: list[int]) -> dict:
    """One epoch with 1 process and with 2 ranks, per seed: seconds, accuracy, efficiency; over the seeds the
    accuracy difference's mean and worst and the median efficiency."""
    import numpy as np

    per_seed = []
    for seed in seeds:
        one_out, one = cli("train", version, *same, "--seed", str(seed))
        two_out, two = cli("train", version, *same, "--seed", str(seed), "--nproc", "2")
        one["accuracy"], two["accuracy"] = (round(o["history"][-1]["accuracy"], 4) for o in (one_out, two_out))
        per_seed.append(
            {
                "seed": seed,
                "epoch_samples": one_out["ledger"]["backward_samples"],
                "1 process": one,
                "2 processes": two,
                "scaling efficiency": round(one["seconds"] / (2 * two["seconds"]), 3),
                "accuracy points (2 - 1)": round(100 * (two["accuracy"] - one["accuracy"]), 2),
            }
        )
        print(json.dumps(per_seed[-1]), flush=True)
    points = [s["accuracy points (2 - 1)"] for s in per_seed]
    return {
        "seeds": per_seed,
        "accuracy points (2 - 1)": {"mean": round(float(np.mean(points)), 2), "worst": max(points, key=abs)},
        "scaling efficiency (median)": float(np.median([s["scaling efficiency"] for s in per_seed])),
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rows", default="1000000,4000000", help="comma-separated row counts (20%% test)")
    p.add_argument("--train-budget", type=float, default=0.2, help="share of the train split the training epoch uses")
    p.add_argument("--batch-size", type=int, default=256, help="global batch size of the training runs")
    p.add_argument("--seeds", default="3,4,5", help="seeds of the training comparison (model init and order)")
    p.add_argument("--parts", default="score,training", help="score, training or both")
    p.add_argument("--repeats", type=int, default=3, help="local and Dask scoring runs, alternated, per N")
    args = p.parse_args()
    sizes = [40_000, 120_000] if args.quick else [int(r) for r in args.rows.split(",")]
    parts = set(args.parts.split(","))
    if not parts or parts - {"score", "training"}:
        p.error("--parts takes score, training or both")
    if args.repeats < 1:
        p.error("--repeats takes 1 or more")
    if "score" not in parts:
        sizes = sizes[:1]
    results, training = [], None
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-scale-out-") as tmp:
            home = Path(tmp) / "project"
            home.mkdir()
            env = {**os.environ, "CURATION_HOME": str(home), "CURATION_DVC": "false"}
            cli = partial(run_cli, env)
            source = Path(tmp) / "big.parquet"
            write_source(source, rows)
            version = str(cli("data", "add", str(source), "--split-column", "split")[0]["id"])
            source.unlink()
            fit = ("--arch", "mlp", "--epochs", "1", "--device", "cpu")
            record = {"rows": rows, "raw_features_mb": round(rows * FEATURES * 4 / 2**20, 1)}
            if "score" in parts:
                record |= score_side_by_side(cli, version, fit, Path(tmp), env, args.repeats)
            if training is None and "training" in parts:  # the training comparison, on the smallest N
                plan = cli("select", version, "-m", "uniform", "--budget", str(args.train_budget), "--seed", "1")[0]
                same = (*fit, "--plan", str(plan["id"]), "--batch-size", str(args.batch_size))
                training = train_side_by_side(cli, version, same, [int(x) for x in args.seeds.split(",")])
                training["rows"] = rows
            results.append(record)
            print(json.dumps(record), flush=True)
    first, last = results[0], results[-1]
    ratios, targets, met = {}, {}, True
    if "score" in parts:
        ratios[f"score speedup at {last['rows']} rows"] = last["speedup"]
        targets["score speedup at the largest N"] = f">= {TARGET_SPEEDUP}"
        targets["worker peak largest/smallest N"] = f"<= {TARGET_WORKER_GROWTH}"
        met = last["speedup"] >= TARGET_SPEEDUP
        for i in range(WORKERS):
            key = f"worker {i + 1} peak_mb"
            growth = round(last["score dask (2 workers)"][key] / first["score dask (2 workers)"][key], 3)
            ratios[f"{key} largest/smallest N"] = growth
            met = met and growth <= TARGET_WORKER_GROWTH
    if training is not None:
        ratios["training scaling efficiency (median)"] = training["scaling efficiency (median)"]
        ratios["training accuracy points (2 - 1), mean"] = training["accuracy points (2 - 1)"]["mean"]
        ratios["training accuracy points (2 - 1), worst"] = training["accuracy points (2 - 1)"]["worst"]
        targets["training accuracy points (2 - 1), worst"] = f"within {TARGET_POINTS}"
        met = met and abs(training["accuracy points (2 - 1)"]["worst"]) <= TARGET_POINTS
    write_result(
        "scale_out",
        {
            "rows": sizes,
            "parts": sorted(parts),
            "workers": WORKERS,
            "arch": "mlp",
            "train_budget": args.train_budget,
            "seeds": args.seeds,
            "repeats": args.repeats,
            "cpus": os.cpu_count(),
        },
        results + ([{"training": training}] if training else []),
        ratios,
        targets,
        met,
        notes="every command its own process; peaks = summed PSS of a process tree, sampled every 0.2 s; the Dask "
        "workers are separate processes started per N (1 task thread, OMP_NUM_THREADS = cores / workers)",
        out=args.out,
        quick=args.quick,
    )


if __name__ == "__main__":
    main()
