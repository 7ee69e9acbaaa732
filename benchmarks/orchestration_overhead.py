"""What Prefect costs: the full pipeline (ingest -> score -> curate -> train) through Prefect vs the same
library calls made directly.

Three paths side by side in one run, each pipeline in a fresh project on the same MNIST-1D size, seeds,
configuration and torch threads: ``direct`` (the library calls), ``end-to-end`` (the `end-to-end` flow: the
four stages' tasks in one flow run, what a user schedules) and ``flows`` (the `ingest`, `score`,
`curate` and `train` flows one after another: four flow runs). The order rotates every repeat so a
drifting machine load does not favour a path. The flows run against Prefect's temporary local server
(the default when PREFECT_API_URL is unset); starting it is the cold start, timed separately with a
no-op flow before anything else; one tiny untimed pipeline per path then warms imports and first-use
costs. The ratios are median totals over the median direct total; per-stage medians show where a
difference lies, and CPU seconds (this process, all threads; the server subprocess apart) show whether
Prefect did work or the machine was just busier. DVC tracking is off in every path (the same library
call in each, and its lock waits would only add noise).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks._common import parser, peak_rss_mb, write_result

TARGET_OVERHEAD = 0.05
STAGES = ("ingest", "score", "curate", "train")


def _direct(cfg: dict) -> dict[str, float]:
    from curation.config import load_settings
    from curation.data import sources
    from curation.data.versions import add_version
    from curation.scoring.run import score_version
    from curation.selection.run import select_plan
    from curation.training.config import TrainConfig
    from curation.training.run import train_version

    settings, times = load_settings(), {}
    start = time.perf_counter()
    info = add_version(settings, sources.mnist1d(samples=cfg["samples"], seed=cfg["seed"]))
    times["ingest"] = time.perf_counter() - start
    start = time.perf_counter()
    scores = score_version(settings, info.id, epochs=cfg["score_epochs"], seed=cfg["seed"])
    times["score"] = time.perf_counter() - start
    start = time.perf_counter()
    plan, _ = select_plan(settings, info.id, cfg["method"], cfg["params"], scores.id)
    times["curate"] = time.perf_counter() - start
    start = time.perf_counter()
    train_version(settings, info.id, TrainConfig.make(epochs=cfg["epochs"], seed=cfg["seed"]), plan.id)
    times["train"] = time.perf_counter() - start
    return times


def _flows(cfg: dict) -> dict[str, float]:
    from flows.curate import curate
    from flows.ingest import ingest
    from flows.score import score
    from flows.train import train

    times = {}
    start = time.perf_counter()
    info = ingest(source="mnist1d", samples=cfg["samples"], seed=cfg["seed"])
    times["ingest"] = time.perf_counter() - start
    start = time.perf_counter()
    scores = score(version=str(info["id"]), epochs=cfg["score_epochs"], seed=cfg["seed"])
    times["score"] = time.perf_counter() - start
    start = time.perf_counter()
    plan = curate(version=str(info["id"]), method=cfg["method"], params=cfg["params"], score_set=scores["id"])
    times["curate"] = time.perf_counter() - start
    start = time.perf_counter()
    train(version=str(info["id"]), epochs=cfg["epochs"], seed=cfg["seed"], plan=plan["id"])
    times["train"] = time.perf_counter() - start
    return times


def _end_to_end(cfg: dict) -> dict[str, float]:
    from flows.end_to_end import end_to_end

    start = time.perf_counter()
    end_to_end(
        samples=cfg["samples"],
        data_seed=cfg["seed"],
        score_epochs=cfg["score_epochs"],
        method=cfg["method"],
        params=cfg["params"],
        epochs=cfg["epochs"],
        seed=cfg["seed"],
    )
    return {"all": time.perf_counter() - start}


def _server_cpu() -> float:
    """CPU seconds of this process's children so far: the temporary Prefect server."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):  # a child that ended meanwhile
            total += sum(child.cpu_times()[:2])
    return total


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--samples", type=int, default=20_000, help="MNIST-1D samples (80%% train)")
    p.add_argument("--epochs", type=int, default=12, help="epochs of the final training")
    p.add_argument("--repeats", type=int, default=3, help="end-to-end runs per path (order rotating)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for both paths")
    args = p.parse_args()
    samples, epochs, repeats = (2_000, 2, 1) if args.quick else (args.samples, args.epochs, args.repeats)
    cfg = {
        "samples": samples,
        "seed": 0,
        "score_epochs": 2,
        "epochs": epochs,
        "method": "topk-balanced",
        "params": {"budget": 0.3, "score": "loss"},
    }

    root = Path(tempfile.mkdtemp(prefix="orchestration-"))
    os.environ.update(
        {
            "PREFECT_HOME": str(root / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
            "CURATION_DVC": "false",
        }
    )
    os.environ.pop("PREFECT_API_URL", None)  # Prefect's temporary local server
    import torch
    from prefect import flow

    torch.set_num_threads(args.threads)

    @flow(name="noop")
    def noop() -> int:
        return 0

    start = time.perf_counter()
    noop()
    cold = time.perf_counter() - start
    start = time.perf_counter()
    noop()
    warm_noop = time.perf_counter() - start

    warmup = {**cfg, "samples": 1_000, "score_epochs": 1, "epochs": 1}
    for path, fn in (
        ("direct", _direct),
        ("end-to-end", _end_to_end),
        ("flows", _flows),
    ):  # imports, first use: untimed
        os.environ["CURATION_HOME"] = str(root / f"warmup-{path}")
        Path(os.environ["CURATION_HOME"]).mkdir()
        fn(warmup)

    paths = {"direct": _direct, "end-to-end": _end_to_end, "flows": _flows}
    runs = {path: [] for path in paths}
    for i in range(repeats):
        order = list(paths)[i % len(paths) :] + list(paths)[: i % len(paths)]
        for path in order:
            os.environ["CURATION_HOME"] = str(root / f"{path}-{i}")
            Path(os.environ["CURATION_HOME"]).mkdir()
            cpu, server = time.process_time(), _server_cpu()
            stages = paths[path](cfg)
            runs[path].append(
                {
                    **stages,
                    "total": sum(stages.values()),
                    "cpu": time.process_time() - cpu,
                    "server_cpu": _server_cpu() - server,
                }
            )
            print(f"{path} #{i}: " + ", ".join(f"{k} {v:.1f}s" for k, v in runs[path][-1].items()), flush=True)

    med = {path: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for path, rs in runs.items()}
    direct = med["direct"]["total"]
    ratio = {path: med[path]["total"] / direct for path in ("end-to-end", "flows")}
    results = [
        {
            "system": path,
            **{f"{k}_seconds": round(v, 2) for k, v in med[path].items()},
            "run_totals": ", ".join(f"{r['total']:.1f}" for r in runs[path]),
        }
        for path in runs
    ]
    results.append(
        {"system": "prefect-cold-start", "seconds": round(cold, 2), "noop_flow_warm_seconds": round(warm_noop, 3)}
    )
    fixed = med["flows"]["curate"] - med["direct"]["curate"]
    met = ratio["end-to-end"] - 1 <= TARGET_OVERHEAD and direct >= 60
    notes = (
        f"end-to-end flow/direct {ratio['end-to-end']:.3f}, four flows/direct {ratio['flows']:.3f} on runs of "
        f"{direct:.0f} s (direct); the cold start of the temporary server ({cold:.1f} s) is not in these "
        "figures. CPU seconds of this process (median): "
        + ", ".join(f"{p} {med[p]['cpu']:.1f}" for p in paths)
        + "; of the server: "
        + ", ".join(f"{p} {med[p]['server_cpu']:.1f}" for p in paths)
        + ". Per stage (four flows - direct): "
        + ", ".join(f"{k} {med['flows'][k] - med['direct'][k]:+.2f} s" for k in STAGES)
        + f". Curate does almost no work ({med['direct']['curate']:.2f} s direct), so its difference is the fixed "
        f"cost of one flow run: {fixed:.2f} s, most of it the flow-run heartbeat thread's exit (Prefect joins a "
        "thread that sleeps in 1 s steps); the end-to-end flow pays it once, the four flows four times."
    )
    write_result(
        "orchestration_overhead",
        {**cfg, "repeats": repeats, "threads": args.threads},
        results,
        {
            "end_to_end_over_direct": round(ratio["end-to-end"], 4),
            "overhead": round(ratio["end-to-end"] - 1, 4),
            "flows_over_direct": round(ratio["flows"], 4),
            "fixed_seconds_per_flow": round(fixed, 2),
            "cpu_end_to_end_over_direct": round(med["end-to-end"]["cpu"] / med["direct"]["cpu"], 4),
            "cold_start_seconds": round(cold, 2),
        },
        {"overhead": f"<= {TARGET_OVERHEAD}", "direct_seconds": ">= 60"},
        met,
        notes,
        args.out,
        args.quick,
    )
    print(f"peak RSS {peak_rss_mb()} MB")


if __name__ == "__main__":
    main()
