"""Peak memory of every stage as N grows: the CLI a user runs, on MNIST-1D-shaped versions (40 float features).

Side by side in one run, for each N (default 1M and 16M rows, 20% test): ``curation data add`` of a Parquet
file with a split column; ``select -m soft --ratio 0.1`` and ``select -m uniform --budget 0.1``; ``train
--epochs 1`` with the soft 0.1 plan and with full data, the splits streamed from disk (``--data-path
stream``), and full data held in memory (``--data-path memory``) for comparison; ``score`` with the model
the streamed full epoch trained (every train row scored and written batch by batch). Every train stage
evaluates on the test split (streamed in the training process). Each command runs in its own process; its
peak memory is the peak of the summed PSS of its process tree (DataLoader workers included), sampled every
0.2 s. Labels come from a fixed random linear teacher, so the models learn. Reported: peak memory per
stage, its growth per million rows, and the ratio of the largest to the smallest N (1.0 = independent of N).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks._common import measured, parser, write_result

FEATURES = 40
CLASSES = 10
WRITE_ROWS = 500_000  # rows generated and written per batch
TARGET_GROWTH = 1.5  # every stage but the in-memory one: peak at the largest N over the smallest
TARGET_PEAK_MB = 2048  # ... and at most 2 GB at the largest N


def write_source(path: Path, rows: int, seed: int = 0) -> None:
    """A Parquet file of ``rows`` samples (features list, label, split), written batch by batch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    teacher = np.random.default_rng(1234).normal(size=(FEATURES, CLASSES)).astype(np.float32)
    writer = None
    for lo in range(0, rows, WRITE_ROWS):
        n = min(WRITE_ROWS, rows - lo)
        x = rng.normal(size=(n, FEATURES)).astype(np.float32)
        label = (x @ teacher + 0.5 * rng.normal(size=(n, CLASSES))).argmax(1).astype(np.int64)
        split = np.where(rng.random(n) < 0.2, "test", "train")
        table = pa.table(
            {
                "sample_id": pa.array(np.arange(lo, lo + n), pa.int64()),
                "features": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), FEATURES),
                "label": pa.array(label),
                "split": pa.array(split),
            }
        )
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rows", default="1000000,16000000", help="comma-separated row counts (20%% test)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the streamed runs")
    p.add_argument("--batch-size", type=int, default=1024, help="training batch size (a large one keeps it short)")
    args = p.parse_args()
    sizes = [50_000, 200_000] if args.quick else [int(r) for r in args.rows.split(",")]
    curation = [sys.executable, "-m", "curation"]
    stream = ["--data-path", "stream", "--workers", str(args.workers)]
    train = ["--arch", "mlp", "--epochs", "1", "--batch-size", str(args.batch_size)]
    stages = {  # name -> the command after `curation`, given the version id and what earlier stages made
        "select soft 0.1": lambda v, made: ["select", v, "-m", "soft", "--ratio", "0.1"],
        "select uniform 0.1": lambda v, made: ["select", v, "-m", "uniform", "--budget", "0.1"],
        "train soft 0.1 (stream)": lambda v, made: ["train", v, *train, "--plan", made["select soft 0.1"], *stream],
        "train full (stream)": lambda v, made: ["train", v, *train, *stream],
        "train full (memory)": lambda v, made: ["train", v, *train, "--data-path", "memory"],
        "score (stream)": lambda v, made: ["score", v, "--model", made["train full (stream)"], *stream],
    }
    results = []
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
            home = Path(tmp) / "project"
            home.mkdir()
            env = {**os.environ, "CURATION_HOME": str(home), "CURATION_DVC": "false", "OMP_NUM_THREADS": "2"}
            source = Path(tmp) / "big.parquet"
            write_source(source, rows)
            add = measured([*curation, "data", "add", str(source), "--split-column", "split", "--json"], env)
            source.unlink()
            version, made = str(json.loads(add["output"])["id"]), {}
            record = {"rows": rows, "raw_features_mb": round(rows * FEATURES * 4 / 2**20, 1)}
            record["data add"] = {k: add[k] for k in ("seconds", "peak_mb")}
            for name, command in stages.items():
                run = measured([*curation, *command(version, made), "--json"], env)
                outcome = json.loads(run["output"])
                made[name] = str(outcome["model_version_id"] if name.startswith("train") else outcome["id"])
                record[name] = {k: run[k] for k in ("seconds", "peak_mb")}
                if name.startswith("train"):
                    record[name]["accuracy"] = round(outcome["history"][-1]["accuracy"], 4)
            results.append(record)
            print(json.dumps(record), flush=True)
    small, large = results[0], results[-1]
    millions = (large["rows"] - small["rows"]) / 1e6
    ratios = {}
    stages = ["data add", *stages]
    for stage in stages:
        ratios[f"{stage} peak large/small"] = round(large[stage]["peak_mb"] / small[stage]["peak_mb"], 3)
        ratios[f"{stage} MB per million rows"] = round(
            (large[stage]["peak_mb"] - small[stage]["peak_mb"]) / millions, 1
        )
    bounded = [s for s in stages if "memory" not in s]
    met = all(ratios[f"{s} peak large/small"] <= TARGET_GROWTH for s in bounded) and all(
        large[s]["peak_mb"] <= TARGET_PEAK_MB for s in bounded
    )
    write_result(
        "bounded_memory",
        {"rows": sizes, "features": FEATURES, "classes": CLASSES, "arch": "mlp", "epochs": 1, "workers": args.workers},
        results,
        ratios,
        {f"{s} peak large/small": f"<= {TARGET_GROWTH}" for s in bounded}
        | {f"{s} peak at the largest N": f"<= {TARGET_PEAK_MB} MB" for s in bounded},
        met,
        notes="peak = summed PSS of the command's process tree, sampled every 0.2 s; each stage a fresh process; "
        "per-row bookkeeping stays in memory: 2 bytes a row at ingest (class, split), a train row's id and label in "
        "select (12 bytes), a split's ids and file rows (12 bytes a row), backward counts (4) and an epoch's entries "
        "(about 20 bytes each) in training and scoring",
        out=args.out,
        quick=args.quick,
    )


if __name__ == "__main__":
    main()
