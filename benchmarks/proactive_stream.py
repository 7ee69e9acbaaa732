"""Proactive training vs full retraining vs periodic retraining on a drifting MNIST-1D stream.

Side by side in one run, chunk by chunk: each chunk is registered as a new version (add_chunk),
then every system brings its model up to date with ``train_step`` (the library's one code path):
proactive continues from its deployed model on t new + (B - t) history rows, ``passes`` times
over the new chunk; full retrains from scratch on everything seen so far; periodic does the same
every ``every`` chunks and otherwise keeps its model. ``--variant`` adds more proactive systems
(e.g. ``passes=6,new_per_batch=64``). Each model is evaluated on the current chunk's test split
(never used for any choice). Training time is each step's CPU seconds (``time.thread_time``, one
torch thread; the target's measure, robust to other jobs on a shared machine), reported beside the
ledger's wall-clock train_seconds and the trained samples. ``--seeds`` runs whole
streams (each seed draws its own stream and initialisations); per seed, full retraining and the
other systems run as two tasks, ``--jobs`` tasks at once; the ratios are
over all seeds together (mean accuracy points averaged, seconds summed).
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from benchmarks._common import parser, peak_rss_mb, write_result

TARGET_POINTS = 0.5  # proactive mean accuracy within this many points of full retraining
TARGET_TIME = 0.15  # at most this share of full retraining's training time


def _variant(text: str) -> dict:
    """``passes=6,new_per_batch=64`` -> {"passes": "6", "new_per_batch": "64"} (pydantic converts the values)."""
    return dict(item.split("=", 1) for item in text.split(",") if item)


def run_stream(seed: int, configs: dict, train, chunks: int, samples: int) -> dict:
    """One stream: every system's per-chunk accuracy, training seconds and trained samples."""
    import torch

    from curation.config import load_settings
    from curation.continual.data import StreamData, load_chunk
    from curation.continual.proactive import ContinualConfig, evaluate, train_step
    from curation.data.stream import add_chunk, drifting_mnist1d
    from models import ModelSpec

    train = train.model_copy(update={"seed": seed})
    out = {name: {"accuracy": [], "seconds": 0.0, "cpu_seconds": 0.0, "samples": 0} for name in configs}
    models, optimizers, waiting = dict.fromkeys(configs), dict.fromkeys(configs), dict.fromkeys(configs, 0)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(home=Path(tmp), dvc=False)
        loaded = []
        for c in range(chunks):
            info = add_chunk(settings, "stream", drifting_mnist1d(c, samples=samples, seed=seed))
            loaded.append(load_chunk(settings, info, torch.device("cpu")))
            stream, spec = StreamData.of(loaded), ModelSpec.of(info)
            if c == 0:  # every system's first model is the same one from scratch: train it once, book it to each
                tick = time.thread_time()
                first = train_step(stream, 1, None, ContinualConfig(mode="full"), train, spec, step=c)
                first_cpu = time.thread_time() - tick
            for name, config in configs.items():
                waiting[name] += 1
                if c == 0:
                    models[name], optimizers[name] = copy.deepcopy(first.model), copy.deepcopy(first.optimizer)
                    out[name]["seconds"] += first.ledger.train_seconds
                    out[name]["cpu_seconds"] += first_cpu
                    out[name]["samples"] += first.ledger.backward_samples
                    out[name]["accuracy"].append(first.accuracy)
                    waiting[name] = 0
                elif config.due(waiting[name]):
                    tick = time.thread_time()
                    step = train_step(stream, waiting[name], models[name], config, train, spec, step=c,
                                      optimizer=optimizers[name])
                    out[name]["cpu_seconds"] += time.thread_time() - tick
                    models[name], optimizers[name], waiting[name] = step.model, step.optimizer, 0
                    out[name]["seconds"] += step.ledger.train_seconds
                    out[name]["samples"] += step.ledger.backward_samples
                    out[name]["accuracy"].append(step.accuracy)
                else:
                    out[name]["accuracy"].append(evaluate(models[name], stream, train))
            print(f"seed {seed} chunk {c}: " + "  ".join(f"{n} {out[n]['accuracy'][-1]:.4f}" for n in configs),
                  flush=True)
    return out


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--chunks", type=int, default=10)
    p.add_argument("--samples", type=int, default=4000, help="samples per chunk (20%% test)")
    p.add_argument("--epochs", type=int, default=15, help="epochs of each full retraining")
    p.add_argument("--new-per-batch", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=128, help="B of full retraining (and of proactive by default)")
    p.add_argument("--proactive-batch-size", type=int, default=None, help="B of a proactive batch")
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--strategy", default="uniform", choices=("uniform", "window", "time"))
    p.add_argument("--lr-scale", type=float, default=1.0, help="proactive lr as a share of the training lr")
    p.add_argument("--variant", action="append", default=[], help="another proactive system: key=value,...")
    p.add_argument("--every", type=int, default=3, help="periodic retraining every this many chunks")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seeds", default="0,2", help="comma-separated stream seeds")
    p.add_argument("--jobs", type=int, default=1, help="seeds run in this many processes at once")
    args = p.parse_args()
    chunks, samples, epochs = (4, 600, 4) if args.quick else (args.chunks, args.samples, args.epochs)
    seeds = [int(s) for s in args.seeds.split(",")][:1 if args.quick else None]

    import torch

    torch.set_num_threads(args.threads)
    from curation.continual.proactive import ContinualConfig
    from curation.training.config import TrainConfig

    proactive = {"new_per_batch": args.new_per_batch, "batch_size": args.proactive_batch_size,
                 "strategy": args.strategy, "passes": args.passes, "lr_scale": args.lr_scale}
    configs = {"proactive": ContinualConfig.make(mode="proactive", **proactive),
               "full": ContinualConfig(mode="full"),
               "periodic": ContinualConfig(mode="periodic", every=args.every)}
    for text in args.variant:
        configs[f"proactive[{text}]"] = ContinualConfig.make(mode="proactive", **{**proactive, **_variant(text)})
    train = TrainConfig(arch="cnn1d", epochs=epochs, batch_size=args.batch_size, seed=seeds[0], device="cpu")
    wall = time.perf_counter()
    groups = [{"full": configs["full"]}, {k: v for k, v in configs.items() if k != "full"}]
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"), initializer=torch.set_num_threads,
                             initargs=(args.threads,)) as pool:
        futures = {(seed, i): pool.submit(run_stream, seed, group, train, chunks, samples)
                   for seed in seeds for i, group in enumerate(groups)}
        runs = {seed: {name: value for i in range(len(groups)) for name, value in futures[seed, i].result().items()}
                for seed in seeds}
    wall = time.perf_counter() - wall

    results = []
    for name in configs:
        per_seed = [runs[s][name] for s in seeds]
        results.append({"system": name, "config": configs[name].model_dump(include={
                            "mode", "new_per_batch", "batch_size", "strategy", "passes", "lr_scale", "every"}),
                        "mean_accuracy": statistics.fmean(statistics.fmean(r["accuracy"]) for r in per_seed),
                        "final_accuracy": statistics.fmean(r["accuracy"][-1] for r in per_seed),
                        "mean_accuracy_per_seed": [statistics.fmean(r["accuracy"]) for r in per_seed],
                        "accuracy_per_chunk_per_seed": [r["accuracy"] for r in per_seed],
                        "train_seconds": sum(r["seconds"] for r in per_seed),
                        "cpu_seconds": sum(r["cpu_seconds"] for r in per_seed),
                        "trained_samples": sum(r["samples"] for r in per_seed)})
    by = {r["system"]: r for r in results}
    full = by["full"]

    def points(name: str) -> float:
        return round(100 * (by[name]["mean_accuracy"] - full["mean_accuracy"]), 3)

    def share(name: str, key: str = "cpu_seconds") -> float:
        return round(by[name][key] / full[key], 4)

    ratios = {}
    for name in configs:
        if name != "full":
            ratios[f"{name}_minus_full_mean_accuracy_points"] = points(name)
            ratios[f"{name}_time_share_of_full"] = share(name)
            ratios[f"{name}_wall_time_share_of_full"] = share(name, "train_seconds")
            ratios[f"{name}_sample_share_of_full"] = round(by[name]["trained_samples"] / full["trained_samples"], 4)
    ratios["proactive_minus_full_points_per_seed"] = [
        round(100 * (a - b), 3) for a, b in zip(by["proactive"]["mean_accuracy_per_seed"], full["mean_accuracy_per_seed"])]
    targets = {"proactive_minus_full_mean_accuracy_points": f">= -{TARGET_POINTS}",
               "proactive_time_share_of_full": f"<= {TARGET_TIME}"}
    met = points("proactive") >= -TARGET_POINTS and share("proactive") <= TARGET_TIME
    notes = [] if met else [f"missed: proactive is {points('proactive'):+.2f} points vs full at "
                            f"{share('proactive'):.1%} of its training time"]
    notes.append(f"wall {wall:.0f} s for the whole run; peak RSS {peak_rss_mb()} MB")
    write_result("proactive_stream", {"chunks": chunks, "samples_per_chunk": samples, "arch": "cnn1d",
                                      "full_epochs": epochs, "batch_size": args.batch_size, **proactive,
                                      "variants": args.variant, "periodic_every": args.every,
                                      "threads": args.threads, "seeds": seeds},
                 results, ratios, targets, met, "; ".join(notes), out=args.out, quick=args.quick)


if __name__ == "__main__":
    main()
