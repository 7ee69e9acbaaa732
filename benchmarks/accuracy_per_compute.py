"""Accuracy per compute (issue 4): every curation method against full-data training at equal total compute.

One MNIST-1D version (``--samples``, 80% train), one model (``--model cnn1d`` or ``resnet1d``), one seed
for every run. The full-data run trains ``E`` epochs (``--epochs``); a method at ratio ``r`` (soft
sampling, the fixed uniform subset, the score-based coreset) trains ``ceil(E / r)`` epochs of ``r*N``
samples, so every run spends the same training compute (cosine schedule over its own length).
Selective-Backprop (beta 2) and its stale variant (staleness 2) get the number of epochs that spends
the same compute given their expected cost per epoch (selection forwards + 1/(beta+1) of the
backwards); what they really spent is in their ledgers.

Methods:
- ``full``: every train sample every epoch (the baseline).
- ``soft``: ``curation select soft --ratio r`` (m = ceil(rN) i.i.d. draws WITH replacement, fresh each epoch).
- ``uniform``: a fixed uniform random subset of ``rN`` samples, the same every epoch.
- ``el2n-topk-balanced``: proxy scoring (``score_version``: a cnn1d proxy trained ``--proxy-epochs`` on the
  full train split, then EL2N of every train sample), then the highest-EL2N ``rN`` samples per class;
  the scoring and selection cost (FLOPs and seconds) comes in through the plan's ledger.
- ``selective-backprop`` / ``selective-backprop-stale``: the online selector inside the batch loop; its
  selection forwards and seconds are in the ledger. Candidates come in batches of ``(beta+1) x`` the
  training batch (one selection forward per training batch on average); the training batches have the
  model's batch size.

Evaluation at equal compute: the Trainer's ``eval_every`` schedule evaluates the model on the test
split whenever the run's cumulative compute (training + selection FLOPs, the ledger's ``total_flops``)
crosses the next multiple of ``--eval-every`` x one full-data epoch's training FLOPs (and at the start
and the end); there is no per-epoch evaluation besides. Evaluation time is left out of the wall and CPU
seconds; they include the selection (the plan's scoring and selection time, the online selector's time).
Selective-Backprop scores candidate batches of ``(beta+1) x`` the training batch (``candidate_batch_size``).

On a contended machine the grid can be split over processes: ``--no-full --save-runs a.json`` runs some
methods without the baseline, and ``--merge full.json,a.json`` writes the combined result from earlier
result or run files (the same data, model, epochs and seed) without training anything.

Per method: the curve (in the JSON's "curves"), best accuracy, and the backward samples, FLOPs and wall seconds at the first
checkpoint reaching the target (99% of the full run's best accuracy); speedups = full's cost to the
target over the method's.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import RESULTS, parser, peak_rss_mb, write_result

NAME = "accuracy_per_compute"
FRACTION = 0.99
SB_BETA = 2.0
SB_STALENESS = 2
DEFAULT_EPOCHS = {"cnn1d": 20, "resnet1d": 10}
ALL_METHODS = ("full", "soft", "uniform", "el2n-topk-balanced", "selective-backprop", "selective-backprop-stale")
BUDGET_METHODS = ("soft", "uniform", "el2n-topk-balanced")


def _to_target(points: list[dict], target: float | None) -> dict | None:
    if target is None:  # the baseline was cut off: no target
        return None
    for p in points:
        if p["accuracy"] >= target:
            return p
    return None


def _at_equal_compute(runs: list[dict], full: dict) -> dict:
    """Accuracy and backward samples of every run at the checkpoints all of them reached (in full-data epochs
    of compute), for runs cut off before a target exists."""
    last = full["points"][-1]
    epoch = last["flops"] / last["epoch"] if last.get("epoch") else None
    if not epoch:
        return {}
    reached = min(r["points"][-1]["flops"] for r in runs) / epoch
    marks = [m / 10 for m in range(2, int(reached * 10 + 1e-9) + 1, 2)]
    at = {r["system"]: [next(p for p in r["points"] if p["flops"] >= m * epoch * (1 - 1e-9)) for m in marks]
          for r in runs}
    return {"compute_full_epochs": marks,
            "accuracy_at_equal_compute": {k: [p["accuracy"] for p in v] for k, v in at.items()},
            "backward_samples_at_equal_compute": {k: [p["backward_samples"] for p in v] for k, v in at.items()}}


def _ratio(a, b):
    return None if a is None or b is None or b <= 0 else round(a / b, 3)


def _shared_auc(efficiency, curve, baseline) -> float:
    """Mean accuracy over log10 compute on the union of both ranges (0 before a run's first point, its final
    accuracy after its last), the zero-compute point left out."""
    def positive(c):
        keep = c.flops > 0
        return efficiency.Curve(c.flops[keep], c.seconds[keep], c.accuracy[keep])

    a, b = positive(curve), positive(baseline)
    lo, hi = min(a.flops[0], b.flops[0]), max(a.flops[-1], b.flops[-1])
    return round(efficiency.auc_log_compute(a, lo, hi), 4)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--model", choices=("cnn1d", "resnet1d"), default="cnn1d")
    p.add_argument("--samples", type=int, default=50_000, help="MNIST-1D samples (80%% train, 20%% test)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of the full-data run (default: cnn1d 20, resnet1d 10)")
    p.add_argument("--budgets", default="0.1,0.3,0.5", help="ratios r for soft / uniform / coreset")
    p.add_argument("--methods", default=",".join(ALL_METHODS), help=f"subset of {','.join(ALL_METHODS)}")
    p.add_argument("--eval-every", type=float, default=0.1,
                   help="checkpoint spacing in full-data epochs of training compute (<= 0.1)")
    p.add_argument("--proxy-epochs", type=int, default=3, help="epochs of the cnn1d scoring proxy (coreset)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    p.add_argument("--no-full", action="store_true", help="leave the baseline out (with --save-runs)")
    p.add_argument("--save-runs", type=Path, default=None, help="also write the raw runs here after each run")
    p.add_argument("--merge", default="", help="comma-separated result/run files to combine; trains nothing")
    args = p.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(ALL_METHODS)
    if unknown:
        p.error(f"unknown methods {sorted(unknown)}")
    if "full" not in methods and not args.no_full:
        methods.insert(0, "full")
    if args.no_full and not args.save_runs:
        p.error("--no-full needs --save-runs (the baseline is merged in later with --merge)")
    budgets = [float(b) for b in args.budgets.split(",") if b]
    epochs = args.epochs or DEFAULT_EPOCHS[args.model]
    samples = args.samples
    if args.quick:
        samples, epochs, budgets = 4_000, 3, [0.3]

    import torch

    torch.set_num_threads(args.threads)
    from curation.catalog import Catalog
    from curation.compare import equal_compute_epochs
    from curation.config import load_settings
    from curation.data import sources
    from curation.data.versions import add_version, open_version
    from curation.files import write_atomic
    from curation.metrics import efficiency
    from curation.metrics.ledger import BACKWARD_FACTOR, ComputeLedger
    from curation.scoring.run import score_version
    from curation.selection.plans import FullPlan
    from curation.selection.run import load_plan, select_plan
    from curation.selection.selective_backprop import SelectiveBackprop
    from curation.stages import sb_epochs
    from curation.training import Callback, TrainConfig, Trainer, TrainingData
    from curation.training.records import plan_ledger
    from models import ModelSpec, build

    runs: list[dict] = []
    started = time.perf_counter()

    def report(partial: bool) -> None:
        """Summaries, result JSON and plots of the runs so far (rewritten after every run: a killed
        benchmark leaves what finished)."""
        full = runs[0]
        full_best = max(p["accuracy"] for p in full["points"])
        target = None if full.get("partial_run") else FRACTION * full_best
        full_hit = _to_target(full["points"], target)
        curves = {}
        curve_points: dict = {}  # written beside "results" (one table row per method stays readable)
        results = []
        for r in runs:
            pts = r["points"]
            curve = efficiency.Curve(np.array([p["flops"] for p in pts]), np.array([p["seconds"] for p in pts]),
                                     np.array([p["accuracy"] for p in pts]))
            curves[r["system"]] = curve
            hit = _to_target(pts, target)
            led = r["ledger"]
            results.append({
                "system": r["system"], "method": r["method"], "ratio": r["ratio"], "epochs": r["epochs"],
                "cut_off_at_full_epochs": (round(pts[-1]["flops"] / (train_samples * (1 + BACKWARD_FACTOR)
                                                                     * flops_per_sample), 2)
                                           if r.get("partial_run") else None),
                "batch_size": r["batch_size"], "selector": r["selector"],
                "best_accuracy": round(curve.best, 4), "final_accuracy": round(float(curve.accuracy[-1]), 4),
                "reached_target": hit is not None,
                "backward_samples_to_target": None if hit is None else hit["backward_samples"],
                "flops_to_target": None if hit is None else hit["flops"],
                "seconds_to_target": None if hit is None else round(hit["seconds"], 2),
                "speedup_backward": None if hit is None else _ratio(full_hit["backward_samples"], hit["backward_samples"]),
                "speedup_compute": None if hit is None else _ratio(full_hit["flops"], hit["flops"]),
                "speedup_time": None if hit is None else _ratio(full_hit["seconds"], hit["seconds"]),
                "cpu_seconds_to_target": None if hit is None else round(hit["cpu_seconds"], 2),
                "speedup_cpu": None if hit is None else _ratio(full_hit["cpu_seconds"], hit["cpu_seconds"]),
                "total_flops": led["total_flops"], "total_seconds": round(pts[-1]["seconds"], 2),
                "total_cpu_seconds": round(pts[-1]["cpu_seconds"], 2),
                "backward_samples": led["backward_samples"], "forward_samples": led["forward_samples"],
                "selection_forward_samples": led["selection_forward_samples"],
                "selection_flops": led["selection_flops"], "selection_seconds": round(led["selection_seconds"], 2),
                "auc_log_compute_shared": _shared_auc(efficiency, curve, curves["full"]),
            })
            curve_points[r["system"]] = {k: [round(p[k], 3) if k.endswith("seconds") else p[k] for p in pts]
                                         for k in ("flops", "seconds", "cpu_seconds", "accuracy", "backward_samples")}

        def pick(method, ratio=None):
            return next((x for x in results if x["method"] == method and (ratio is None or x["ratio"] == ratio)), None)

        ratios: dict = {"target_accuracy": target and round(target, 4), "full_best_accuracy": round(full_best, 4),
                        "full_seconds_to_target": None if full_hit is None else round(full_hit["seconds"], 2),
                        "full_backward_samples_to_target": None if full_hit is None else full_hit["backward_samples"]}
        targets: dict = {}
        checks: dict = {}
        others = [x for x in results if x["method"] != "full" and x["reached_target"]]
        if others:
            # the best method: the fastest (wall) of those meeting both targets, else the fastest overall
            both = [x for x in others if (x["speedup_backward"] or 0) >= 2 and (x["speedup_time"] or 0) >= 1.5]
            best = max(both or others, key=lambda x: (x["speedup_time"] or 0, x["speedup_backward"] or 0))
            ratios |= {"best_method": best["system"], "best_method_speedup_backward": best["speedup_backward"],
                       "best_method_speedup_time": best["speedup_time"],
                       "best_method_speedup_cpu": best["speedup_cpu"],
                       "max_speedup_backward": max(x["speedup_backward"] or 0 for x in others)}
        else:
            ratios |= {"best_method": None, "best_method_speedup_backward": None, "best_method_speedup_time": None}
        targets |= {"best_method_speedup_backward": ">= 2 (on resnet1d)", "best_method_speedup_time": ">= 1.5 (on resnet1d)"}
        checks["best_method"] = bool(others) and (ratios["best_method_speedup_backward"] or 0) >= 2 and (
            ratios["best_method_speedup_time"] or 0) >= 1.5
        sb, stale = pick("selective-backprop"), pick("selective-backprop-stale")
        if sb is not None:
            ratios["sb_speedup_backward"] = sb["speedup_backward"]
            ratios["sb_speedup_time"] = sb["speedup_time"]
            ratios["sb_speedup_cpu"] = sb["speedup_cpu"]
            targets["sb_speedup_backward"] = ">= 1.5"
            checks["sb_speedup_backward"] = (sb["speedup_backward"] or 0) >= 1.5
        if stale is not None:
            ratios["sb_stale_speedup_backward"] = stale["speedup_backward"]
            ratios["sb_stale_speedup_time"] = stale["speedup_time"]
            ratios["sb_stale_speedup_cpu"] = stale["speedup_cpu"]
            targets["sb_stale_speedup_time"] = "> 1"
            checks["sb_stale_speedup_time"] = (stale["speedup_time"] or 0) > 1
        for r in budgets:
            soft, uni = pick("soft", r), pick("uniform", r)
            if soft and uni:
                key = f"soft_minus_uniform_best_accuracy_r{r:g}"
                ratios[key] = round(soft["best_accuracy"] - uni["best_accuracy"], 4)
                ratios[f"soft_minus_uniform_auc_r{r:g}"] = round(
                    soft["auc_log_compute_shared"] - uni["auc_log_compute_shared"], 4)
                targets[key] = "> 0 (soft beats the fixed subset at equal compute)"
                checks[key] = ratios[key] > 0
        if target is None:  # a cut-off baseline gives no target: compare accuracy at the same compute instead
            ratios, targets, checks = {"full_cut_off": True, **_at_equal_compute(runs, full)}, {}, {}
        ratios["checks"] = checks
        met = bool(checks) and all(checks.values())

        stem = args.out.name.removesuffix(".json") if args.out else (
            NAME + ("" if args.model == "cnn1d" else f".{args.model}") + (".quick" if args.quick else ""))
        RESULTS.mkdir(parents=True, exist_ok=True)
        pngs = []
        for r in budgets:
            names = ["full", *[x["system"] for x in results if x["ratio"] == r and x["method"] != "full"],
                     *[x["system"] for x in results if x["method"].startswith("selective")]]
            fig = efficiency.plot({k: curves[k] for k in names}, target)
            fig.suptitle(f"MNIST-1D {train_samples} train, {args.model}, budget {r:g}", fontsize=9)
            path = RESULTS / f"{stem}.r{round(r * 100)}.png"
            fig.savefig(path)
            pngs.append(path.name)
            if len(budgets) == 1 or r == 0.3:
                fig.savefig(RESULTS / f"{stem}.png")
        command = "python -m benchmarks.accuracy_per_compute" + (
            f" --quick --model {args.model}" if args.quick else
            f" --model {args.model} --samples {samples} --budgets {args.budgets} --methods {','.join(methods)}"
            f" --epochs {epochs} --eval-every {args.eval_every} --proxy-epochs {args.proxy_epochs} --seed {args.seed}"
            f" --threads {args.threads}") + (f" --merge {args.merge}" if args.merge else "")
        not_run = [m for m in ALL_METHODS if m not in methods]
        done = {(x["method"], x["ratio"]) for x in results}
        missing = [f"{m} r={r:g}" for r in budgets for m in BUDGET_METHODS if m in methods and (m, r) not in done]
        missing += [m for m in methods if m.startswith("selective") and (m, None) not in done]
        cut = [r["system"] for r in runs if r.get("partial_run")]
        notes = ((f"PARTIAL: the benchmark was still running; not finished yet: {', '.join(missing)}. "
                  if partial else "") +
                 ("NO TARGET: the full run was cut off, so its best accuracy is unknown; the ratios give every "
                  "run's accuracy and backward samples at the same compute instead. " if target is None else "") +
                 (f"CUT OFF (stopped before their compute budget; the curve is a prefix of the full-length "
                  f"run's, best_accuracy is the best so far, cut_off_at_full_epochs says where): {', '.join(cut)}. "
                  if cut else "") +
                 f"target = {FRACTION} x the full run's best test accuracy over equal-compute checkpoints "
                 f"(every {args.eval_every} full-data epoch of compute). Speedups are full's cost at its first "
                 f"checkpoint reaching the target over the method's. Wall seconds exclude evaluation and include "
                 f"selection (proxy scoring + plan selection for the coreset: {score_seconds and round(score_seconds, 1)} s "
                 f"of scoring; online selection for Selective-Backprop). cpu_seconds: CPU time of the process on the "
                 f"same work ({args.threads} torch thread(s)), less blurred than wall time by other jobs on this "
                 f"shared machine. Selective-Backprop: beta {SB_BETA:g}, "
                 f"candidate batches of {candidates} for training batches of {base_cfg.batch_size}; stale variant "
                 f"staleness {SB_STALENESS}. One seed ({args.seed}) for every run. Methods not run: {not_run or 'none'}. "
                 f"The best-method targets are stated for resnet1d; this run's model is {args.model}. "
                 f"Plots: {', '.join(pngs)}. Command: {command}")
        params = {"model": args.model, "samples": samples, "train_samples": train_samples, "test_samples": test_samples,
                  "full_epochs": epochs, "budgets": budgets, "methods": methods, "eval_every_full_epochs": args.eval_every,
                  "flops_per_sample": flops_per_sample, "proxy": f"cnn1d x {args.proxy_epochs} epochs",
                  "seed": args.seed, "threads": args.threads, "sb_beta": SB_BETA, "sb_staleness": SB_STALENESS,
                  "command": command, "partial": partial, "peak_rss_mb": peak_rss_mb(), "benchmark_seconds": round(time.perf_counter() - started, 1)}
        path = write_result(NAME, params, results, ratios, targets, met, notes=notes,
                            out=args.out or RESULTS / f"{stem}.json", quick=args.quick)
        payload = json.loads(path.read_text())
        payload["curves"] = curve_points  # per method: the equal-compute checkpoints
        path.write_text(json.dumps(payload, indent=2) + "\n")

    with tempfile.TemporaryDirectory(prefix="bench-apc-") as home:
        settings = load_settings(home=Path(home), dvc=False)
        info = add_version(settings, sources.mnist1d(samples=samples))
        version, reader = open_version(settings, info.id)
        data = TrainingData.load(reader, version.id, version.feature_shape, torch.device("cpu"))
        spec = ModelSpec.of(version)
        n = len(data.train)
        base_cfg = TrainConfig(arch=args.model, seed=args.seed, device="cpu").resolve(version.feature_shape)
        torch.manual_seed(args.seed)
        flops_per_sample = Trainer(build(args.model, spec), data, base_cfg).ledger.flops_per_sample
        score_id = score_seconds = score_cpu = None
        train_samples, test_samples = n, len(data.test)
        candidates = int(base_cfg.batch_size * (SB_BETA + 1))

        def run(label: str, method: str, ratio: float | None, run_epochs: int, plan, selector=None,
                plan_cost: dict | None = None, plan_cpu: float = 0.0, candidate_batch: int | None = None) -> None:
            cfg = base_cfg.model_copy(update={"epochs": run_epochs, "eval_every": args.eval_every,
                                              "candidate_batch_size": candidate_batch})
            torch.manual_seed(args.seed)
            trainer = Trainer(build(args.model, spec), data, cfg, selector=selector)
            if plan_cost:  # the scoring and selection this plan cost, as train_version books it
                trainer.ledger.absorb_selection(ComputeLedger.from_dict(plan_cost))

            def entry(partial: bool) -> dict:
                points = [{**e, "cpu_seconds": e["cpu_seconds"] + plan_cpu} for e in trainer.evaluations]
                return {"system": label, "method": method, "ratio": ratio, "epochs": run_epochs,
                        "batch_size": cfg.batch_size, "points": points, "ledger": trainer.ledger.to_dict(),
                        "selector": None if selector is None else selector.get_params(), "partial_run": partial}

            class SaveProgress(Callback):
                """Every 5 evaluations, the run so far into --save-runs: a curve's prefix does not depend on
                where it stops (the schedule is fixed by the run's length), so a cut-off run still tells
                whether and when it reached the target."""

                def on_evaluate(self, record: dict) -> None:
                    if args.save_runs and len(self.trainer.evaluations) % 5 == 0:
                        save([*runs, entry(partial=True)])

            trainer.add_callback(SaveProgress())
            tick = time.perf_counter()
            trainer.fit(plan)
            ledger = trainer.ledger
            points = entry(False)["points"]
            print(f"[{time.perf_counter() - started:7.1f}s] {label}: {run_epochs} epochs, "
                  f"best {max(p['accuracy'] for p in points):.4f}, {ledger.backward_samples} backward, "
                  f"{points[-1]['seconds']:.1f}s, {points[-1]['cpu_seconds']:.1f} cpu-s "
                  f"({time.perf_counter() - tick:.1f}s with evaluations)", flush=True)
            runs.append(entry(False))
            save(runs)
            if runs[0]["method"] == "full":
                report(partial=True)

        def save(these: list[dict]) -> None:
            if args.save_runs:
                text = json.dumps({"score_seconds": score_seconds, "runs": these}) + "\n"
                write_atomic(args.save_runs, lambda tmp: tmp.write_text(text))

        def stored_plan(method: str, params: dict, score_set: int | None = None):
            """The plan, its recorded cost, and the CPU seconds selecting it took here."""
            tick = time.process_time()
            plan_info, _ = select_plan(settings, info.id, method, params, score_set_id=score_set)
            plan = load_plan(settings, plan_info.id)
            return plan, plan_ledger(Catalog(settings.catalog), plan_info.id), time.process_time() - tick

        if args.merge:
            for path in args.merge.split(","):
                loaded, seconds = load_runs(Path(path))
                runs.extend(loaded)
                score_seconds = score_seconds or seconds
            runs.sort(key=lambda r: r["method"] != "full")  # the baseline first
            if not runs or runs[0]["method"] != "full":
                p.error("--merge needs a file with the full run")
            methods[:] = list(dict.fromkeys(r["method"] for r in runs))
            report(partial=False)
            return
        if "full" in methods:
            run("full", "full", 1.0, epochs, FullPlan(info.id, data.train.sample_ids))
        full_plan = FullPlan(info.id, data.train.sample_ids)
        for method, staleness in (("selective-backprop", 0), ("selective-backprop-stale", SB_STALENESS)):
            if method not in methods:
                continue
            selector = SelectiveBackprop(beta=SB_BETA, staleness=staleness, batch_size=base_cfg.batch_size,
                                         seed=args.seed)
            run(method, method, None, sb_epochs(epochs, SB_BETA, staleness), full_plan, selector=selector,
                candidate_batch=candidates)
        for r in budgets:
            r_epochs = equal_compute_epochs(epochs, r)
            if "soft" in methods:
                plan, cost, cpu = stored_plan("soft", {"ratio": r, "seed": args.seed})
                run(f"soft r={r:g}", "soft", r, r_epochs, plan, plan_cost=cost, plan_cpu=cpu)
            if "uniform" in methods:
                plan, cost, cpu = stored_plan("uniform", {"budget": r, "seed": args.seed})
                run(f"uniform r={r:g}", "uniform", r, r_epochs, plan, plan_cost=cost, plan_cpu=cpu)
            if "el2n-topk-balanced" in methods:
                if score_id is None:
                    tick, ctick = time.perf_counter(), time.process_time()
                    score_id = score_version(settings, info.id, arch="cnn1d", epochs=args.proxy_epochs,
                                             seed=args.seed, device="cpu").id
                    score_seconds, score_cpu = time.perf_counter() - tick, time.process_time() - ctick
                plan, cost, cpu = stored_plan("topk-balanced", {"budget": r, "seed": args.seed, "score": "el2n"},
                                              score_id)
                run(f"el2n-topk-balanced r={r:g}", "el2n-topk-balanced", r, r_epochs, plan, plan_cost=cost,
                    plan_cpu=score_cpu + cpu)
    if runs and runs[0]["method"] == "full":
        report(partial=False)


def load_runs(path: Path) -> tuple[list[dict], float | None]:
    """Runs from a ``--save-runs`` file, or rebuilt from a result file (its rows and curves)."""
    payload = json.loads(path.read_text())
    if "runs" in payload:
        return payload["runs"], payload.get("score_seconds")
    runs = []
    for row in payload["results"]:
        curve = payload["curves"][row["system"]]
        points = [dict(zip(curve, values)) for values in zip(*curve.values())]
        ledger = {k: row[k] for k in ("total_flops", "backward_samples", "forward_samples",
                                      "selection_forward_samples", "selection_flops", "selection_seconds")}
        runs.append({k: row[k] for k in ("system", "method", "ratio", "epochs", "batch_size", "selector")}
                    | {"points": points, "ledger": ledger})
    seconds = payload["notes"].split("proxy scoring + plan selection for the coreset: ")[-1].split(" s ")[0]
    return runs, None if seconds in ("None", payload["notes"]) else float(seconds)


if __name__ == "__main__":
    main()
