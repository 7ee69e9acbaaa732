"""The GPU check (issue 20): one prepared run of the whole training path on a CUDA GPU, in at most 8 minutes.

Three parts, each under the time left of ``--budget-s`` (a part that would not fit is skipped, with a note):

1. ``tests``: the ``cuda`` tests (tests/test_cuda.py) in a pytest subprocess without conftest.py, so the
   machine needs only torch, numpy, pyarrow, pydantic and pytest (no Prefect, MLflow, DVC, SQLAlchemy).
2. ``throughput``: training samples/s and peak GPU memory of the Trainer's own step (forward, backward,
   optimizer, ledger) for resnet1d on MNIST-1D-shaped sequences and a 2D model (``resnet2d`` when
   registered, else ``lenet5``) on [3, 32, 32] images, AMP off / bf16 / fp16, at a batch that fills the
   GPU (``--batch-1d``, ``--batch-2d``). Median of ``--repeats`` timed blocks after a warm-up.
3. ``grid``: accuracy per compute at equal training compute (as benchmarks/accuracy_per_compute.py):
   full data, Selective-Backprop (beta 2) and its stale variant (staleness 2), InfoBatch when the
   installed code has it, soft sampling at 0.3; per method the wall seconds (training + selection,
   evaluations left out) to the target, 99% of the full run's best accuracy, and the speedup over full.

Data is made with numpy (curation/data/synthetic.py): the mnist1d package is not needed. The result
goes to benchmarks/results/gpu_check.json with the device's name (``--device cpu --quick`` writes
gpu_check.cpu.quick.json: the smoke test that the script runs end to end without a GPU).
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from benchmarks._common import RESULTS, parser, peak_rss_mb, write_result

NAME = "gpu_check"
ROOT = Path(__file__).resolve().parent.parent
TESTS = "tests/test_cuda.py"
SB_BETA, SB_STALENESS, SOFT_RATIO = 2.0, 2, 0.3
TARGETS = {"cuda_tests_failed": "== 0", "amp_speedup_resnet1d": ">= 1.5", "sb_wall_speedup": ">= 1.5"}
DEVICE_COMMAND = (
    "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade "
    "--target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; set -o pipefail; "
    "PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu_check --out $OUT/gpu_check.json 2>&1 "
    "| tee $OUT/gpu_check.log"
)
PENDING = f"""## GPU check (not yet run)

`benchmarks/gpu_check.py` (issue 20) has not run on a GPU yet: no GPU figure exists. A session whose
task is lent a GPU runs it in one call of the device tool (about 6 minutes of the 15; the script's
own budget is `--budget-s`, 330 s by default, so a rerun still fits):

1. here, once: `make gpu-wheels` (pydantic's wheels for Python 3.12 into `.whl/`, git-ignored; the GPU
   machine has torch, numpy, pyarrow and pytest but not pydantic);
2. the device tool's `run` with `carry: [".whl"]`, `timeout_s: 420` and the command

   ```
   {DEVICE_COMMAND}
   ```

3. copy `gpu_check.json` from the returned files to `benchmarks/results/gpu_check.json` and run
   `python -m benchmarks.report`: this section is then replaced by the measured table.

Without a GPU the same script runs end to end with
`make gpu-check GPU_PYTHON=.venv/bin/python ARGS="--device cpu --quick"` (the cuda tests skip).
"""


class Clock:
    """The run's time budget (none: ``inf``)."""

    def __init__(self, budget_s: float):
        self.start, self.budget = time.perf_counter(), budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget - self.elapsed()


def run_tests(timeout: float) -> dict:
    """The cuda tests in a subprocess; counts from its JUnit XML."""
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-o",
            "addopts=",
            "--noconftest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rs",
            TESTS,
            f"--junitxml={junit}",
        ]
        tick = time.perf_counter()
        try:
            proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return {"system": "cuda tests", "error": f"timed out after {timeout:.0f} s"}
        out = (proc.stdout + proc.stderr).strip().splitlines()
        row = {
            "system": "cuda tests",
            "seconds": round(time.perf_counter() - tick, 1),
            "exit_code": proc.returncode,
            "tail": out[-15:],
        }
        if not junit.is_file():
            return {**row, "error": "pytest wrote no report (is pytest installed?)"}
        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        cases = suite.findall("testcase")
        failed = [c.get("name") for c in cases if c.find("failure") is not None or c.find("error") is not None]
        skipped = [c.get("name") for c in cases if c.find("skipped") is not None]
        reasons = sorted({c.find("skipped").get("message", "") for c in cases if c.find("skipped") is not None})
        return {
            **row,
            "tests": len(cases),
            "passed": len(cases) - len(failed) - len(skipped),
            "failed": len(failed),
            "skipped": len(skipped),
            "failed_names": failed,
            "skip_reasons": reasons,
        }


def _trainer(arch: str, data, device, **config):
    import torch

    from curation.training.config import TrainConfig
    from curation.training.trainer import Trainer
    from models import ModelSpec, build

    torch.manual_seed(0)
    model = build(arch, ModelSpec(int(np.prod(data.feature_shape)), data.feature_shape, 10))
    return Trainer(model, data, TrainConfig(arch=arch, **config))


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(arch: str, data, device, amp: str, batch: int, steps: int, repeats: int) -> dict:
    """Samples/s of the Trainer's training step at ``batch`` rows (median of ``repeats`` blocks of ``steps``)."""
    import torch

    t = _trainer(arch, data, device, batch_size=batch, amp=amp, epochs=1)
    rng = np.random.default_rng(0)
    n = len(data.train)

    def block(count: int) -> float:
        batches = [rng.integers(0, n, size=batch) for _ in range(count)]
        _sync(device)
        tick = time.perf_counter()
        t.train_batches(batches, lambda i, k: t.config.lr)
        _sync(device)
        return time.perf_counter() - tick

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    block(max(3, steps // 4))  # warm-up: cuDNN's algorithm search, the allocator, lazy inits
    seconds = statistics.median(block(steps) for _ in range(repeats))
    row = {
        "system": f"{arch} amp={amp}",
        "arch": arch,
        "amp": amp,
        "batch": batch,
        "steps": steps,
        "samples_per_s": round(steps * batch / seconds, 1),
        "step_ms": round(1000 * seconds / steps, 3),
        "memory_format": str(t.memory_format).removeprefix("torch."),
    }
    if device.type == "cuda":
        row["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    return row


def grid(
    data, device, arch: str, epochs: int, batch: int | None, eval_every: float, seed: int, clock: Clock
) -> tuple[list[dict], dict]:
    """Every method at the full run's training compute; wall seconds to the target. A method is left out
    when the time left is under 1.5 x the full run's wall time."""
    from benchmarks.accuracy_per_compute import FRACTION, _to_target
    from curation.metrics.ledger import equal_compute_epochs
    from curation.selection.plans import FullPlan
    from curation.selection.sampling import SOFT, SampledPlan
    from curation.selection.selective_backprop import SelectiveBackprop

    ids = data.train.sample_ids
    full_plan = FullPlan(data.version_id, ids)
    batch = batch or _trainer(arch, data, device, epochs=epochs).config.batch_size
    runs, notes = [], {}

    def run(system: str, run_epochs: int, plan, selector=None, candidates: int | None = None, **extra) -> None:
        import torch

        from curation.training.config import TrainConfig
        from curation.training.trainer import Trainer
        from models import ModelSpec, build

        if runs and clock.left() < 1.5 * runs[0]["wall_s"]:
            notes[system] = f"left out: {clock.left():.0f} s left, the full run took {runs[0]['wall_s']} s"
            return
        torch.manual_seed(seed)
        model = build(arch, ModelSpec(int(np.prod(data.feature_shape)), data.feature_shape, 10))
        config = TrainConfig(
            arch=arch,
            epochs=run_epochs,
            seed=seed,
            eval_every=eval_every,
            batch_size=batch,
            candidate_batch_size=candidates,
        )
        tick = time.perf_counter()
        result = Trainer(model, data, config, selector=selector).fit(plan)
        led = result.ledger
        runs.append(
            {
                "system": system,
                "epochs": run_epochs,
                "best_accuracy": max(p["accuracy"] for p in result.evaluations),
                "final_accuracy": result.evaluations[-1]["accuracy"],
                "flops": led.total_flops,
                "backward_samples": led.backward_samples,
                "selection_forward_samples": led.selection_forward_samples,
                "train_s": round(led.train_seconds, 2),
                "selection_s": round(led.selection_seconds, 2),
                "eval_s": round(led.eval_seconds, 2),
                "wall_s": round(time.perf_counter() - tick, 2),
                **extra,
                "points": [
                    {k: p[k] for k in ("epoch", "accuracy", "flops", "seconds", "backward_samples")}
                    for p in result.evaluations
                ],
            }
        )

    run("full", epochs, full_plan)
    run(
        f"soft {SOFT_RATIO:g}",
        equal_compute_epochs(epochs, SOFT_RATIO),
        SampledPlan(data.version_id, ids, SOFT, SOFT_RATIO, seed),
    )
    for system, staleness in (("selective-backprop", 0), ("selective-backprop-stale", SB_STALENESS)):
        selector = SelectiveBackprop(beta=SB_BETA, staleness=staleness, batch_size=batch, seed=seed)
        run(
            system,
            selector.equal_compute_epochs(epochs),
            full_plan,
            selector,
            candidates=int(batch * (SB_BETA + 1)),
            beta=SB_BETA,
            staleness=staleness,
        )
    try:
        from curation.selection.infobatch import InfoBatch
    except ImportError:
        notes["infobatch"] = "not in this code (curation.selection.infobatch is missing): left out"
    else:
        selector = InfoBatch(batch_size=batch, seed=seed)
        run(
            "infobatch",
            selector.equal_compute_epochs(epochs),
            full_plan,
            selector,
            candidates=selector.candidate_batch_size(batch),
        )
    target = FRACTION * runs[0]["best_accuracy"]
    full_at = _to_target(runs[0]["points"], target)
    for r in runs:
        at = _to_target(r["points"], target)
        r["to_target"] = (
            None
            if at is None
            else {"seconds": round(at["seconds"], 2), "flops": at["flops"], "backward_samples": at["backward_samples"]}
        )
        r["wall_speedup"] = (
            None
            if at is None or full_at is None or at["seconds"] <= 0
            else round(full_at["seconds"] / at["seconds"], 3)
        )
    return runs, {
        "grid_batch": batch,
        "target_accuracy": round(target, 4),
        "fraction_of_full_best": FRACTION,
        **{f"grid_{k}": v for k, v in notes.items()},
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument(
        "--budget-s",
        type=float,
        default=330,
        help="wall-clock budget of the whole check in seconds (at most 480: the issue's 8 minutes)",
    )
    p.add_argument("--parts", default="tests,throughput,grid", help="subset of tests,throughput,grid")
    p.add_argument("--batch-1d", type=int, default=16384, help="resnet1d throughput batch (to fill an H200)")
    p.add_argument("--batch-2d", type=int, default=4096, help="2D model throughput batch")
    p.add_argument("--grid-model", default="resnet1d")
    p.add_argument("--grid-samples", type=int, default=40_000, help="MNIST-1D-shaped samples (80%% train)")
    p.add_argument("--grid-epochs", type=int, default=10, help="epochs of the full-data run")
    p.add_argument(
        "--grid-batch",
        type=int,
        default=None,
        help="training batch of the grid (default: the model's, 128 for resnet1d; Selective-Backprop's "
        "candidate batch is 3x); larger batches take the GPU out of the launch-bound regime",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    parts = set(args.parts.split(","))
    quick = args.quick
    if quick:
        args.batch_1d, args.batch_2d, args.grid_samples, args.grid_epochs = 64, 32, 1_500, 2
        args.grid_model = "cnn1d"
    steps, repeats = (3, 1) if quick else (30, 3)

    import torch

    from curation.data import synthetic
    from curation.training.data import TrainingData
    from curation.training.trainer import resolve_device
    from models import names

    device = resolve_device(args.device)
    clock = Clock(math.inf if quick else args.budget_s)  # a quick run is a smoke test: every part runs
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"gpu_check on {device_name}, budget {args.budget_s:.0f} s", flush=True)
    results, ratios, notes, extra = [], {}, [], {}  # extra: lists kept out of the table (curves, test output)

    if "tests" in parts:
        row = run_tests(timeout=min(300.0, max(30.0, clock.left() - 60)) if not quick else 600.0)
        extra["tests"] = {k: row.pop(k) for k in ("tail", "failed_names", "skip_reasons") if k in row}
        results.append({"section": "tests", **row})
        ratios["cuda_tests_failed"] = row.get("failed")
        print(
            f"[{clock.elapsed():.0f} s] tests: { ({k: row.get(k) for k in ('passed', 'failed', 'skipped')}) }",
            flush=True,
        )

    if "throughput" in parts:
        arch_2d = "resnet2d" if "resnet2d" in names() else "lenet5"
        sets = {
            "resnet1d": TrainingData.of_arrays(*synthetic.sequences(max(4 * args.batch_1d, 2_000)), device),
            arch_2d: TrainingData.of_arrays(*synthetic.images(max(4 * args.batch_2d, 500)), device),
        }
        amps = ("off", "bf16", "fp16") if device.type == "cuda" else ("off", "bf16")
        for arch, batch in (("resnet1d", args.batch_1d), (arch_2d, args.batch_2d)):
            for amp in amps:
                if clock.left() < 120:  # keep about 2 minutes for the grid
                    notes.append(f"throughput {arch} amp={amp} skipped: out of time")
                    continue
                row = throughput(arch, sets[arch], device, amp, batch, steps, repeats)
                if device.type == "cuda":
                    torch.cuda.empty_cache()  # the next configuration's peak memory is its own
                results.append({"section": "throughput", **row})
                print(f"[{clock.elapsed():.0f} s] {row}", flush=True)
        del sets
        by = {(r.get("arch"), r.get("amp")): r["samples_per_s"] for r in results if r["section"] == "throughput"}
        for arch in ("resnet1d", arch_2d):
            for amp in ("bf16", "fp16"):
                if (arch, amp) in by and (arch, "off") in by:
                    ratios[f"amp_speedup_{arch}" + ("" if amp == "bf16" else "_fp16")] = round(
                        by[(arch, amp)] / by[(arch, "off")], 3
                    )

    grid_notes = {}
    if "grid" in parts:
        if clock.left() < 60:
            notes.append("grid skipped: out of time")
        else:
            data = TrainingData.of_arrays(*synthetic.sequences(args.grid_samples, seed=args.seed), device)
            runs, grid_notes = grid(
                data, device, args.grid_model, args.grid_epochs, args.grid_batch, 0.25, args.seed, clock
            )
            extra["curves"] = {}
            for r in runs:
                extra["curves"][r["system"]] = r.pop("points")
                results.append({"section": "grid", **r})
                print(
                    f"[{clock.elapsed():.0f} s] grid {r['system']}: best {r['best_accuracy']:.4f}, "
                    f"to target {r['to_target']}, speedup {r['wall_speedup']}",
                    flush=True,
                )
            sb = [r for r in runs if r["system"] == "selective-backprop"]
            ratios["sb_wall_speedup"] = sb[0]["wall_speedup"] if sb else None
            for r in runs[1:]:
                ratios[f"wall_speedup_{r['system'].replace(' ', '_')}"] = r["wall_speedup"]

    met = (
        ratios.get("cuda_tests_failed") == 0
        and (ratios.get("amp_speedup_resnet1d") or 0) >= 1.5
        and (ratios.get("sb_wall_speedup") or 0) >= 1.5
    )
    out = args.out or (
        None if device.type == "cuda" else RESULTS / (f"{NAME}.cpu.quick.json" if quick else f"{NAME}.cpu.json")
    )
    params = {
        "device": device_name,
        "budget_s": args.budget_s,
        "parts": sorted(parts),
        "batch_1d": args.batch_1d,
        "batch_2d": args.batch_2d,
        "steps": steps,
        "repeats": repeats,
        "grid_model": args.grid_model,
        "grid_samples": args.grid_samples,
        "grid_epochs": args.grid_epochs,
        "seed": args.seed,
        "sb_beta": SB_BETA,
        "sb_staleness": SB_STALENESS,
        "soft_ratio": SOFT_RATIO,
        "elapsed_s": round(clock.elapsed(), 1),
        "peak_rss_mb": peak_rss_mb(),
        **grid_notes,
    }
    path = write_result(
        NAME,
        params,
        results,
        ratios,
        TARGETS,
        met,
        notes="; ".join(notes) or "one seed: the speedups are a first GPU reading, not an accuracy claim",
        out=out,
        quick=quick,
    )
    path.write_text(json.dumps({**json.loads(path.read_text()), **extra}, indent=2) + "\n")
    summary = [
        f"{r['section']:<10} {r['system']:<28} "
        + ", ".join(
            f"{k}={r[k]}"
            for k in (
                "passed",
                "failed",
                "skipped",
                "samples_per_s",
                "peak_gpu_memory_gb",
                "best_accuracy",
                "wall_speedup",
            )
            if k in r
        )
        for r in results
    ]
    print("\n".join(["", *summary, f"ratios: {ratios}", f"met: {met}"]))


if __name__ == "__main__":
    main()
