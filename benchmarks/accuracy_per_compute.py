"""Accuracy per compute (issues 4 and 18): every curation method against full data and against full data
shortened to the same budget, over several seeds, optionally with noisy labels.

One MNIST-1D version (``--samples``, 80% train; ``--noise p`` flips p of the TRAINING labels to another
class, seeded, the test labels stay clean), one model (``--model cnn1d`` or ``resnet1d``), every run once
per seed (``--seeds``, default 0,1,2: model init, shuffling, plans and selectors all follow the seed).

Runs per seed:
- ``full``: every train sample for ``E`` epochs (``--epochs``), cosine schedule: the reference.
- at their own length (no budget): ``infobatch`` (E epochs; it saves what it prunes),
  ``selective-backprop`` and ``selective-backprop-stale`` (beta 2, staleness 2: the epochs their expected
  cost matches E full epochs in; ``OnlineMethod.equal_compute_epochs``).
- at each budget b of ``--budgets`` (a share of the full run's backward samples, ``TrainConfig.budget``:
  the run stops when b x N x E samples are backpropagated and its learning rate decays linearly to 0
  exactly there): ``full-shortened`` (every sample, fewer epochs), ``soft`` / ``rs2`` (ratio b, so E
  epochs of bN), ``uniform`` and ``el2n-topk-balanced`` (fixed subsets of bN, E epochs; the coreset's
  proxy scoring, a cnn1d trained ``--proxy-epochs`` on the train split, is booked as its selection cost),
  ``selective-backprop`` (beta 2) and ``infobatch`` (defaults), each until the budget is spent.

Every run is evaluated on the test split at the same compute checkpoints (every ``--eval-every`` of a
full-data epoch's training + selection FLOPs, and at its end). Wall and CPU seconds leave evaluation out
and include selection. Two views, each as mean, spread (std over seeds) and worst seed:
(a) budgets: each method's final accuracy at budget b minus full-shortened's at b (same seed);
(b) the lossless point: the first checkpoint where a run is within ``LOSSLESS`` (0.3 points) of the
    full run's final accuracy (same seed), and the backward samples, wall and CPU seconds it took there,
    as speedups over the full run's cost to the same accuracy;
(c) the same point against the full-data schedule that is long enough to converge and no longer: the
    shortest full-shortened run within ``CONVERGED`` (0.1 points) of the E-epoch run's final accuracy on
    the mean of the seeds. Where E epochs are more than the model needs, (b) measures the over-long
    schedule; (c) does not. The lossless target is checked on both.

``--budgets-only`` leaves the online methods' own-length runs out, and with ``--no-full`` only view (a) is
reported (the noisy variant's budget view).

Split over processes: ``--methods a,b --no-full --save-runs part.json`` runs some methods (the runs are
written after each one), ``--merge full.json,part.json`` writes the combined result from saved run files
(same data, model, epochs and seeds) without training anything. A result file this benchmark wrote can be
merged too (its runs are rebuilt from its rows and curves), so a grid is completed without rerunning what it
holds; where two files hold the same run (system and seed), the later one wins.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import RESULTS, parser, peak_rss_mb, write_result

NAME = "accuracy_per_compute"
LOSSLESS = 0.003  # within 0.3 points of the full run's final accuracy
CONVERGED = 0.001  # a full-data schedule within 0.1 points of the E-epoch run's final accuracy has converged
SB_BETA = 2.0
SB_STALENESS = 2
NOISE_SEED = 20_240
DEFAULT_EPOCHS = {"cnn1d": 20, "resnet1d": 10}
ALL_METHODS = (
    "full",
    "full-shortened",
    "soft",
    "rs2",
    "uniform",
    "el2n-topk-balanced",
    "selective-backprop",
    "selective-backprop-stale",
    "infobatch",
)
OWN_LENGTH = ("full", "infobatch", "selective-backprop", "selective-backprop-stale")  # run without a budget
AT_BUDGETS = ("full-shortened", "soft", "rs2", "uniform", "el2n-topk-balanced", "selective-backprop", "infobatch")


def noisy(loaded, share: float):
    """The data set with ``share`` of its training labels moved to another class at random (seeded)."""
    import pyarrow as pa

    from curation.data.sources import Loaded

    table = loaded.table
    labels = table.column("label").to_numpy().copy()
    train = np.flatnonzero(table.column("split").to_numpy(zero_copy_only=False) == "train")
    rng = np.random.default_rng([NOISE_SEED, round(share * 1000)])
    flip = rng.choice(train, size=round(share * len(train)), replace=False)
    classes = int(labels.max()) + 1
    labels[flip] = (labels[flip] + rng.integers(1, classes, size=len(flip))) % classes
    column = table.column_names.index("label")
    table = table.set_column(column, table.schema.field("label"), pa.array(labels, table.schema.field("label").type))
    return Loaded(table, {**loaded.source, "label_noise": share, "noise_seed": NOISE_SEED}, loaded.default_name)


def recorded_runs(result: dict) -> tuple[dict, list[dict]]:
    """The setting and runs behind a result file this benchmark wrote, rebuilt from its rows and curves (every
    evaluation point; the per-run ledgers are not kept there and the report does not use them)."""
    rows = {r["system"]: r for r in result["results"]}
    runs = []
    for key, curve in result["curves"].items():
        system, seed = key.rsplit(" seed ", 1)
        row = rows[system]
        runs.append(
            {
                "system": system,
                "method": row["method"],
                "budget": row["budget"],
                "seed": int(seed),
                "epochs": row["epochs"],
                "points": [dict(zip(curve, values)) for values in zip(*curve.values())],
                "ledger": None,
                "selector": row["selector"],
            }
        )
    setting = {k: result["params"][k] for k in ("train_samples", "test_samples", "batch_size", "lr", "schedule (full)")}
    return setting, runs


def _stats(values: list, worst=min) -> dict | None:
    """Mean, spread (population std over seeds) and worst seed of per-seed values (None where unreached)."""
    got = [v for v in values if v is not None]
    if not got:
        return None
    return {
        "mean": round(float(np.mean(got)), 4),
        "std": round(float(np.std(got)), 4),
        "worst": round(float(worst(got)), 4),
        "seeds": [None if v is None else round(v, 4) for v in values],
        "reached": f"{len(got)}/{len(values)}",
    }


def _to_lossless(run: dict, ref: dict) -> dict:
    """Where ``run`` first comes within LOSSLESS of ``ref``'s final accuracy (its backward samples, wall and CPU
    seconds) and the speedups over ``ref``'s cost to the same point; None where it never does."""
    target = ref["points"][-1]["accuracy"] - LOSSLESS
    hit, ref_hit = _first(run["points"], target), _first(ref["points"], target)
    return {
        "to_backward": hit and hit["backward_samples"],
        "to_seconds": hit and hit["seconds"],
        "to_cpu": hit and hit["cpu_seconds"],
        "x_backward": hit and _ratio(ref_hit["backward_samples"], hit["backward_samples"]),
        "x_time": hit and _ratio(ref_hit["seconds"], hit["seconds"]),
        "x_cpu": hit and _ratio(ref_hit["cpu_seconds"], hit["cpu_seconds"]),
    }


def _first(points: list[dict], accuracy: float) -> dict | None:
    return next((p for p in points if p["accuracy"] >= accuracy - 1e-12), None)


def _ratio(a, b):
    return None if a is None or b is None or b <= 0 else a / b


def summarize(runs: list[dict], budgets: list[float], noisy_labels: bool) -> tuple[list[dict], dict, dict, dict]:
    """Per system over seeds: the rows, the two views (ratios), their targets and checks (the budget target is
    stated for noisy labels, the lossless one for clean labels)."""
    seeds = sorted({r["seed"] for r in runs})
    full = {r["seed"]: r for r in runs if r["system"] == "full"}
    systems = list(dict.fromkeys(r["system"] for r in runs))
    by = {(r["system"], r["seed"]): r for r in runs}
    rows = []
    for system in systems:
        first = next(r for r in runs if r["system"] == system)
        per = {
            k: []
            for k in (
                "final",
                "delta",
                "backward",
                "seconds",
                "cpu",
                "to_backward",
                "to_seconds",
                "to_cpu",
                "x_backward",
                "x_time",
                "x_cpu",
            )
        }
        for seed in seeds:
            run, ref = by.get((system, seed)), full.get(seed)
            if run is None or ref is None:
                continue
            last = run["points"][-1]
            per["final"].append(last["accuracy"])
            per["delta"].append(100 * (last["accuracy"] - ref["points"][-1]["accuracy"]))
            per["backward"].append(last["backward_samples"])
            per["seconds"].append(last["seconds"])
            per["cpu"].append(last["cpu_seconds"])
            for key, value in _to_lossless(run, ref).items():
                per[key].append(value)
        rows.append(
            {
                "system": system,
                "method": first["method"],
                "budget": first["budget"],
                "epochs": first["epochs"],
                "selector": first["selector"],
                "seeds": [seed for seed in seeds if (system, seed) in by],
                "final_accuracy": _stats(per["final"]),
                "points_vs_full_final": _stats(per["delta"]),
                "backward_samples": _stats(per["backward"], max),
                "seconds": _stats(per["seconds"], max),
                "cpu_seconds": _stats(per["cpu"], max),
                "lossless_backward_samples": _stats(per["to_backward"], max),
                "lossless_seconds": _stats(per["to_seconds"], max),
                "lossless_cpu_seconds": _stats(per["to_cpu"], max),
                "lossless_speedup_backward": _stats(per["x_backward"]),
                "lossless_speedup_time": _stats(per["x_time"]),
                "lossless_speedup_cpu": _stats(per["x_cpu"]),
            }
        )

    ratios: dict = {"full_final_accuracy": next((r["final_accuracy"] for r in rows if r["system"] == "full"), None)}
    targets: dict = {}
    checks: dict = {}
    # (a) at each budget, every method's final accuracy minus full-shortened's, per seed
    for b in budgets:
        shortened = {
            s: by[(f"full-shortened @{b:g}", s)]["points"][-1]["accuracy"]
            for s in seeds
            if (f"full-shortened @{b:g}", s) in by
        }
        view = {}
        for system in systems:
            runs_b = [by[(system, s)] for s in seeds if (system, s) in by and s in shortened]
            if not runs_b or runs_b[0]["budget"] != b or runs_b[0]["method"] == "full-shortened":
                continue
            view[runs_b[0]["method"]] = _stats(
                [100 * (r["points"][-1]["accuracy"] - shortened[r["seed"]]) for r in runs_b]
            )
        if view:
            best = max(view, key=lambda m: view[m]["mean"])
            ratios[f"budget_{b:g}_points_vs_full_shortened"] = view
            ratios[f"budget_{b:g}_best_method"] = best
            ratios[f"budget_{b:g}_best_points_vs_full_shortened"] = view[best]["mean"]
            if b == 0.3 and noisy_labels:
                targets["budget_0.3_best_points_vs_full_shortened"] = ">= 0.5 (on the noisy variant)"
                checks["budget_0.3_best_points_vs_full_shortened"] = view[best]["mean"] >= 0.5
    # (b) the lossless point: within 0.3 points of full's final accuracy, at >= 1.7x fewer backward samples
    # and >= 1.5x less wall time than full took to the same accuracy (means over seeds)
    lossless = {
        r["system"]: {
            "backward": r["lossless_speedup_backward"],
            "time": r["lossless_speedup_time"],
            "cpu": r["lossless_speedup_cpu"],
        }
        for r in rows
        if r["system"] != "full" and r["lossless_speedup_backward"] is not None
    }
    ratios["lossless_speedups"] = lossless
    winners = _lossless_best(lossless, seeds, ratios, "lossless_best")
    # (c) the same point against the shortest full-data schedule that converges
    reference = converged_schedule(by, seeds, budgets, full)
    ratios["converged_schedule"] = reference
    if reference is not None:
        ref = {s: by[(reference, s)] for s in seeds}
        against = {}
        for system in systems:
            if system in ("full", reference):
                continue
            per = [_to_lossless(by[(system, s)], ref[s]) for s in seeds if (system, s) in by]
            if any(x["x_backward"] is not None for x in per):
                against[system] = {
                    name: _stats([x[key] for x in per])
                    for name, key in (("backward", "x_backward"), ("time", "x_time"), ("cpu", "x_cpu"))
                }
        ratios["converged_final_accuracy"] = _stats([ref[s]["points"][-1]["accuracy"] for s in seeds])
        ratios["lossless_speedups_vs_converged"] = against
        winners_c = _lossless_best(against, seeds, ratios, "lossless_best_vs_converged")
    if not noisy_labels:
        targets["lossless_best"] = (
            ">= 1.7x fewer backward samples and >= 1.5x less wall time to within 0.3 "
            "points of full's final accuracy, every seed reaching it (mean of the seeds)"
        )
        checks["lossless_best"] = bool(winners)
        if reference is not None:
            targets["lossless_best_vs_converged"] = (
                f"the same, against {reference}: the shortest full-data schedule within {CONVERGED * 100:g} "
                "points of the full run's final accuracy (long enough to converge and no longer)"
            )
            checks["lossless_best_vs_converged"] = bool(winners_c)
    ratios["checks"] = checks
    return rows, ratios, targets, checks


def converged_schedule(by: dict, seeds: list[int], budgets: list[float], full: dict) -> str | None:
    """The shortest full-shortened run that every seed ran and whose final accuracy is within CONVERGED of the
    full run's on the mean of the seeds (None: the full run's own length is the shortest that converges)."""
    for b in sorted(budgets):
        system = f"full-shortened @{b:g}"
        if not all((system, s) in by and s in full for s in seeds):
            continue
        gaps = [full[s]["points"][-1]["accuracy"] - by[(system, s)]["points"][-1]["accuracy"] for s in seeds]
        if float(np.mean(gaps)) <= CONVERGED:
            return system
    return None


def _lossless_best(speedups: dict, seeds: list[int], ratios: dict, key: str) -> list[str]:
    """Record the fastest method to the lossless point (the one meeting the target, if any) and the fastest
    full-shortened run under ``key``; return the methods meeting the target: >= 1.7x fewer backward samples and
    >= 1.5x less wall time on the mean, every seed having run and reached it."""

    def meets(s):
        x = speedups[s]
        return (
            x["backward"]["reached"] == f"{len(seeds)}/{len(seeds)}"
            and x["backward"]["mean"] >= 1.7
            and x["time"]["mean"] >= 1.5
        )

    def fastest(systems):
        return max(
            systems or [None],
            key=lambda s: 0 if s is None else (speedups[s]["time"]["mean"], speedups[s]["backward"]["mean"]),
        )

    methods = [s for s in speedups if not s.startswith("full-shortened")]  # the baseline is no method
    winners = [s for s in methods if meets(s)]
    ratios[key] = fastest(winners or methods)
    ratios[f"{key}_full_shortened"] = fastest([s for s in speedups if s not in methods])
    return winners


def summary_figure(ratios: dict, budgets: list[float], what: str, noise: float, seeds: list, path: Path) -> bool:
    """The two views over the seeds as one picture: (a) each method's final accuracy minus full-shortened's at
    each budget, (b) the backward-sample and wall-time speedups to the lossless point (mean, std as error
    bars). False when there is nothing to draw yet."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    views = [(b, ratios.get(f"budget_{b:g}_points_vs_full_shortened")) for b in budgets]
    views = [(b, v) for b, v in views if v]
    lossless = {k: v for k, v in (ratios.get("lossless_speedups") or {}).items() if v["backward"]["reached"]}
    if not views and not lossless:
        return False
    fig = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, width_ratios=[3, 2])
    methods = list(dict.fromkeys(m for _, v in views for m in v))
    width = 0.8 / max(len(methods), 1)
    for i, m in enumerate(methods):
        xs = [j + i * width for j, (_, v) in enumerate(views) if m in v]
        left.bar(
            xs,
            [v[m]["mean"] for _, v in views if m in v],
            width,
            yerr=[v[m]["std"] for _, v in views if m in v],
            label=m,
            capsize=2,
        )
    left.axhline(0, color="black", linewidth=0.8)
    left.set_xticks([j + 0.4 - width / 2 for j in range(len(views))], [f"budget {b:g}" for b, _ in views])
    left.set_ylabel("points vs full data shortened to the budget")
    left.set_title("(a) final accuracy at a budget", fontsize=9)
    left.legend(fontsize=7, ncol=2)
    left.grid(True, axis="y", alpha=0.3)
    names = sorted(lossless, key=lambda k: -lossless[k]["backward"]["mean"])
    ys = np.arange(len(names))
    for offset, key, label in ((-0.2, "backward", "backward samples"), (0.2, "time", "wall time")):
        right.barh(
            ys + offset,
            [lossless[k][key]["mean"] for k in names],
            0.4,
            xerr=[lossless[k][key]["std"] for k in names],
            label=label,
            capsize=2,
        )
    right.axvline(1, color="black", linewidth=0.8)
    right.set_yticks(ys, [f"{k} ({lossless[k]['backward']['reached']})" for k in names], fontsize=7)
    right.set_xlabel("x fewer than full data needs for the same accuracy")
    right.set_title(f"(b) to within {LOSSLESS * 100:g} points of full data's final accuracy", fontsize=9)
    right.legend(fontsize=7)
    right.grid(True, axis="x", alpha=0.3)
    fig.suptitle(
        f"MNIST-1D, {what}{f', {noise:g} of the training labels flipped' if noise else ''}, mean and std over seeds "
        f"{', '.join(map(str, seeds))}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path)
    return True


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--model", choices=("cnn1d", "resnet1d"), default="cnn1d")
    p.add_argument("--samples", type=int, default=50_000, help="MNIST-1D samples (80%% train, 20%% test)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of the full run (default: cnn1d 20, resnet1d 10)")
    p.add_argument("--budgets", default="0.1,0.3,0.5", help="shares of the full run's backward samples")
    p.add_argument("--methods", default=",".join(ALL_METHODS), help=f"subset of {','.join(ALL_METHODS)}")
    p.add_argument("--seeds", default="0,1,2", help="one run of every method per seed")
    p.add_argument("--noise", type=float, default=0.0, help="share of training labels flipped at random (0.2)")
    p.add_argument("--eval-every", type=float, default=0.1, help="checkpoint spacing in full-data epochs of compute")
    p.add_argument("--proxy-epochs", type=int, default=3, help="epochs of the cnn1d scoring proxy (coreset)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    p.add_argument("--no-full", action="store_true", help="leave the full run out (with --save-runs)")
    p.add_argument(
        "--budgets-only", action="store_true", help="online methods only at the budgets, not at their own length"
    )
    p.add_argument("--save-runs", type=Path, default=None, help="also write the raw runs here after each run")
    p.add_argument("--merge", default="", help="comma-separated --save-runs files to combine; trains nothing")
    args = p.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(ALL_METHODS)
    if unknown:
        p.error(f"unknown methods {sorted(unknown)}")
    if "full" not in methods and not args.no_full:
        methods.insert(0, "full")
    if args.no_full and not (args.save_runs or args.merge):
        p.error("--no-full needs --save-runs (the full runs are merged in later with --merge)")
    if not 0 <= args.noise < 1:
        p.error("--noise is a share in [0, 1)")
    budgets = [float(b) for b in args.budgets.split(",") if b]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    epochs = args.epochs or DEFAULT_EPOCHS[args.model]
    samples = args.samples
    if args.quick:
        samples, epochs, budgets = 4_000, 3, [0.3]

    import torch

    torch.set_num_threads(args.threads)
    from curation.catalog import Catalog
    from curation.config import load_settings
    from curation.data import sources
    from curation.data.versions import add_version, open_version
    from curation.files import write_atomic
    from curation.metrics import efficiency
    from curation.metrics.ledger import ComputeLedger
    from curation.scoring.run import score_version
    from curation.selection.base import make_selector
    from curation.selection.plans import FullPlan
    from curation.selection.run import load_plan, select_plan
    from curation.training import TrainConfig, Trainer, TrainingData
    from curation.training.records import plan_ledger
    from models import ModelSpec, build

    runs: list[dict] = []
    started = time.perf_counter()
    stem = (
        args.out.name.removesuffix(".json")
        if args.out
        else (
            NAME
            + ("" if args.model == "cnn1d" else f".{args.model}")
            + (f".noise{round(args.noise * 100)}" if args.noise else "")
            + (".quick" if args.quick else "")
        )
    )
    command = (
        "python -m benchmarks.accuracy_per_compute"
        + (
            f" --quick --model {args.model}"
            if args.quick
            else f" --model {args.model} --samples {samples} --epochs {epochs} --budgets {args.budgets}"
            f" --eval-every {args.eval_every} --proxy-epochs {args.proxy_epochs} --threads {args.threads}"
        )
        + (
            f" --seeds {args.seeds} --methods {','.join(methods)}"
            + (f" --noise {args.noise:g}" if args.noise else "")
            + (" --budgets-only" if args.budgets_only else "")
            + (f" --merge {args.merge}" if args.merge else "")
        )
    )

    def report(setting: dict) -> None:
        """Rows, views, plots and the result file of the runs so far (rewritten after every run)."""
        if not any(r["system"] == "full" or r["method"] == "full-shortened" for r in runs):
            return  # nothing to compare with yet
        rows, ratios, targets, checks = summarize(runs, budgets, args.noise > 0)
        folder = args.out.parent if args.out else RESULTS  # plots beside the result file
        folder.mkdir(parents=True, exist_ok=True)
        first_seed = min(r["seed"] for r in runs)
        curves = {
            r["system"]: efficiency.Curve(
                np.array([q["flops"] for q in r["points"]]),
                np.array([q["seconds"] for q in r["points"]]),
                np.array([q["accuracy"] for q in r["points"]]),
            )
            for r in runs
            if r["seed"] == first_seed
        }
        target = float(curves["full"].accuracy[-1]) - LOSSLESS if "full" in curves else None  # a budgets-only run
        pngs = []
        for b in budgets:
            names = [s for s in curves if s in OWN_LENGTH or s.endswith(f"@{b:g}")]
            fig = efficiency.plot({k: curves[k] for k in names}, target)
            top = max(float(curves[k].accuracy.max()) for k in names)
            fig.axes[0].set_ylim((target or top) - 0.04, top + 0.004)  # the last points are the difference
            fig.suptitle(
                f"MNIST-1D {setting['train_samples']} train{f', noise {args.noise:g}' if args.noise else ''}"
                f", {args.model}, budget {b:g}, seed {first_seed}",
                fontsize=9,
            )
            path = folder / f"{stem}.r{round(b * 100)}.png"
            fig.savefig(path)
            pngs.append(path.name)
            if len(budgets) == 1 or b == 0.3:
                fig.savefig(folder / f"{stem}.png")
        summary = folder / f"{stem}.summary.png"
        if summary_figure(
            ratios, budgets, f"{args.model}, {setting['train_samples']} train", args.noise, seeds, summary
        ):
            pngs.append(summary.name)
        wanted = [(m, None) for m in methods if m in OWN_LENGTH] + [
            (m, b) for b in budgets for m in methods if m in AT_BUDGETS
        ]
        done = {(r["method"], r["budget"]) for r in runs}
        missing = [f"{m}{'' if b is None else f' @{b:g}'}" for m, b in wanted if (m, b) not in done]
        cpu_hours = sum(r["points"][-1]["cpu_seconds"] for r in runs) / 3600
        notes = (
            (f"PARTIAL: not run yet: {', '.join(missing)}. " if missing else "")
            + f"Budgets are shares of the full run's backward samples (N x {epochs}); a budgeted run stops "
            f"there and its learning rate decays linearly to 0 at that step. View (a): final accuracy at "
            f"each budget minus full-shortened's at the same budget and seed, in points. View (b): the first "
            f"checkpoint within {LOSSLESS * 100:g} points of the full run's final accuracy (same seed); "
            f"speedups are the full run's cost to that accuracy over the method's. Mean, std and worst over "
            f"seeds {seeds}. Wall seconds exclude evaluation and include selection; cpu_seconds: CPU time of "
            f"the process on the same work ({args.threads} torch thread(s)). "
            f"Label noise: {args.noise:g} of the training labels moved to another class (seed {NOISE_SEED}), "
            f"test labels clean. Selective-Backprop: beta {SB_BETA:g}, candidate batches of (beta+1) x the "
            f"training batch; stale variant staleness {SB_STALENESS}. InfoBatch: prune 0.5, anneal 0.125. "
            f"Training CPU-hours of these runs: {cpu_hours:.3f}. Plots (seed {first_seed}): {', '.join(pngs)}."
        )
        params = {
            **setting,
            "model": args.model,
            "samples": samples,
            "full_epochs": epochs,
            "budgets": budgets,
            "methods": methods,
            "seeds": seeds,
            "label_noise": args.noise,
            "eval_every_full_epochs": args.eval_every,
            "proxy": f"cnn1d x {args.proxy_epochs} epochs",
            "threads": args.threads,
            "sb_beta": SB_BETA,
            "sb_staleness": SB_STALENESS,
            "command": command,
            "training_cpu_hours": round(cpu_hours, 4),
            "peak_rss_mb": peak_rss_mb(),
            "benchmark_seconds": round(time.perf_counter() - started, 1),
        }
        met = bool(checks) and all(checks.values())
        path = write_result(
            NAME,
            params,
            rows,
            ratios,
            targets,
            met,
            notes=notes,
            out=args.out or RESULTS / f"{stem}.json",
            quick=args.quick,
        )
        payload = json.loads(path.read_text())
        payload["curves"] = {
            f"{r['system']} seed {r['seed']}": {
                k: [q[k] for q in r["points"]]
                for k in ("flops", "seconds", "cpu_seconds", "accuracy", "backward_samples")
            }
            for r in runs
        }
        write_atomic(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=2) + "\n"))

    if args.merge:
        setting, merged = {}, {}
        for path in args.merge.split(","):
            payload = json.loads(Path(path).read_text())
            part_setting, part = (payload["setting"], payload["runs"]) if "runs" in payload else recorded_runs(payload)
            merged.update({(r["system"], r["seed"]): r for r in part})  # a later file's run replaces an earlier's
            setting = setting or part_setting
        runs.extend(sorted(merged.values(), key=lambda r: (r["system"] != "full", r["seed"])))
        report(setting)
        return

    with tempfile.TemporaryDirectory(prefix="bench-apc-") as home:
        settings = load_settings(home=Path(home), dvc=False)
        loaded = sources.mnist1d(samples=samples)
        info = add_version(settings, noisy(loaded, args.noise) if args.noise else loaded)
        version, reader = open_version(settings, info.id)
        data = TrainingData.load(reader, version.id, version.feature_shape, torch.device("cpu"))
        spec = ModelSpec.of(version)
        base_cfg = TrainConfig(arch=args.model, epochs=epochs, eval_every=args.eval_every, device="cpu").resolve(
            version.feature_shape
        )
        setting = {
            "train_samples": len(data.train),
            "test_samples": len(data.test),
            "batch_size": base_cfg.batch_size,
            "lr": base_cfg.lr,
            "schedule (full)": base_cfg.schedule,
        }
        full_plan = FullPlan(info.id, data.train.sample_ids)

        def save() -> None:
            if args.save_runs:
                text = json.dumps({"setting": setting, "runs": runs}) + "\n"
                write_atomic(args.save_runs, lambda tmp: tmp.write_text(text))

        def run(
            system: str,
            method: str,
            budget: float | None,
            seed: int,
            plan,
            selector=None,
            plan_cost: dict | None = None,
            plan_cpu: float = 0.0,
        ) -> None:
            update = {"seed": seed, "budget": budget}
            if selector is not None:
                selector.set_params(seed=seed, batch_size=base_cfg.batch_size)
                update["candidate_batch_size"] = selector.candidate_batch_size(base_cfg.batch_size)
                if budget is None:
                    update["epochs"] = selector.equal_compute_epochs(epochs)
            cfg = base_cfg.model_copy(update=update)
            torch.manual_seed(seed)
            trainer = Trainer(build(args.model, spec), data, cfg, selector=selector)
            if plan_cost:  # the scoring and selection this plan cost, as train_version books it
                trainer.ledger.absorb_selection(ComputeLedger.from_dict(plan_cost))
            tick = time.perf_counter()
            trainer.fit(plan)
            points = [{**e, "cpu_seconds": e["cpu_seconds"] + plan_cpu} for e in trainer.evaluations]
            runs.append(
                {
                    "system": system,
                    "method": method,
                    "budget": budget,
                    "seed": seed,
                    "epochs": trainer.epoch,
                    "points": points,
                    "ledger": trainer.ledger.to_dict(),
                    "selector": None if selector is None else selector.get_params(),
                }
            )
            print(
                f"[{time.perf_counter() - started:7.1f}s] seed {seed} {system}: {trainer.epoch} epochs, final "
                f"{points[-1]['accuracy']:.4f}, {trainer.ledger.backward_samples} backward, "
                f"{points[-1]['seconds']:.1f}s, {points[-1]['cpu_seconds']:.1f} cpu-s "
                f"({time.perf_counter() - tick:.1f}s with evaluations)",
                flush=True,
            )
            save()

        def stored_plan(method: str, params: dict, score_set: int | None = None):
            """The plan, its recorded cost, and the CPU seconds selecting it took here."""
            tick = time.process_time()
            plan_info, _ = select_plan(settings, info.id, method, params, score_set_id=score_set)
            plan = load_plan(settings, plan_info.id)
            return plan, plan_ledger(Catalog(settings.catalog), plan_info.id), time.process_time() - tick

        def online(method: str):
            params = {"beta": SB_BETA} if method.startswith("selective-backprop") else {}
            return make_selector(method, **params)

        for seed in seeds:
            for method in OWN_LENGTH:
                if method not in methods or (method == "full" and args.no_full):
                    continue
                if method != "full" and args.budgets_only:
                    continue
                run(method, method, None, seed, full_plan, None if method == "full" else online(method))
            score_id = score_cpu = None
            for b in budgets:
                for method in AT_BUDGETS:
                    if method not in methods:
                        continue
                    system = f"{method} @{b:g}"
                    if method == "full-shortened":
                        run(system, method, b, seed, full_plan)
                    elif method in ("selective-backprop", "infobatch"):
                        run(system, method, b, seed, full_plan, online(method))
                    elif method == "el2n-topk-balanced":
                        if score_id is None:
                            tick = time.process_time()
                            score_id = score_version(
                                settings, info.id, arch="cnn1d", epochs=args.proxy_epochs, seed=seed, device="cpu"
                            ).id
                            score_cpu = time.process_time() - tick
                        plan, cost, cpu = stored_plan(
                            "topk-balanced", {"budget": b, "seed": seed, "score": "el2n"}, score_id
                        )
                        run(system, method, b, seed, plan, plan_cost=cost, plan_cpu=score_cpu + cpu)
                    else:
                        size = {"ratio": b} if method in ("soft", "rs2") else {"budget": b}
                        plan, cost, cpu = stored_plan(method, {**size, "seed": seed})
                        run(system, method, b, seed, plan, plan_cost=cost, plan_cpu=cpu)
        if not args.no_full:  # a part without the full runs is reported by the --merge of the parts
            report(setting)


if __name__ == "__main__":
    main()
