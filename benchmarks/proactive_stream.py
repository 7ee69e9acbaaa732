"""Proactive training vs full retraining vs periodic retraining on a drifting MNIST-1D stream.

Side by side in one run, chunk by chunk: each chunk is registered as a new version (add_chunk),
then every system brings its model up to date with ``train_step`` (the library's one code path):
proactive continues from its deployed model on t new + (B - t) uniform-history rows, ``passes``
times over the new chunk; full retrains from scratch on everything seen so far; periodic does the
same every ``every`` chunks and otherwise keeps its model. Each model is evaluated on the current
chunk's test split (never used for any choice). Training time is the ledger's train_seconds.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks._common import parser, peak_rss_mb, write_result

TARGET_POINTS = 0.5  # proactive mean accuracy within this many points of full retraining
TARGET_TIME = 0.15  # at most this share of full retraining's training time


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--chunks", type=int, default=10)
    p.add_argument("--samples", type=int, default=2000, help="samples per chunk (20%% test)")
    p.add_argument("--epochs", type=int, default=20, help="epochs of each full retraining")
    p.add_argument("--new-per-batch", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--passes", type=int, default=4)
    p.add_argument("--lr-scale", type=float, default=1.0, help="proactive lr as a share of the training lr")
    p.add_argument("--every", type=int, default=3, help="periodic retraining every this many chunks")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    chunks, samples, epochs = (4, 600, 4) if args.quick else (args.chunks, args.samples, args.epochs)

    import torch

    torch.set_num_threads(args.threads)
    from curation.config import load_settings
    from curation.continual.data import StreamData, load_chunk
    from curation.continual.proactive import ContinualConfig, evaluate, train_step
    from curation.data.stream import add_chunk, drifting_mnist1d
    from curation.training.config import TrainConfig
    from models import ModelSpec

    configs = {"proactive": ContinualConfig(mode="proactive", new_per_batch=args.new_per_batch, strategy="uniform",
                                            passes=args.passes, lr_scale=args.lr_scale),
               "full": ContinualConfig(mode="full"),
               "periodic": ContinualConfig(mode="periodic", every=args.every)}
    train = TrainConfig(arch="cnn1d", epochs=epochs, batch_size=args.batch_size, seed=args.seed, device="cpu")
    models = dict.fromkeys(configs)
    optimizers = dict.fromkeys(configs)
    waiting = dict.fromkeys(configs, 0)  # chunks not trained on yet
    accuracy = {name: [] for name in configs}
    seconds = dict.fromkeys(configs, 0.0)
    samples_trained = dict.fromkeys(configs, 0)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(home=Path(tmp), dvc=False)
        loaded = []
        wall = time.perf_counter()
        for c in range(chunks):
            info = add_chunk(settings, "stream", drifting_mnist1d(c, samples=samples, seed=args.seed))
            loaded.append(load_chunk(settings, info, torch.device("cpu")))
            stream = StreamData.of(loaded)
            spec = ModelSpec.of(info)
            for name, config in configs.items():
                waiting[name] += 1
                if models[name] is None or config.due(waiting[name]):
                    step = train_step(stream, waiting[name], models[name], config, train, spec, step=c,
                                      optimizer=optimizers[name])
                    models[name], optimizers[name], waiting[name] = step.model, step.optimizer, 0
                    seconds[name] += step.ledger.train_seconds
                    samples_trained[name] += step.ledger.backward_samples
                    accuracy[name].append(step.accuracy)
                else:
                    accuracy[name].append(evaluate(models[name], stream, train))
            print(f"chunk {c}: " + "  ".join(f"{n} {accuracy[n][-1]:.4f}" for n in configs), flush=True)
        wall = time.perf_counter() - wall

    results = [{"system": name, "mean_accuracy": statistics.fmean(accuracy[name]), "final_accuracy": accuracy[name][-1],
                "accuracy_per_chunk": accuracy[name], "train_seconds": seconds[name],
                "trained_samples": samples_trained[name]} for name in configs]
    by = {r["system"]: r for r in results}
    points = 100 * (by["proactive"]["mean_accuracy"] - by["full"]["mean_accuracy"])
    share = by["proactive"]["train_seconds"] / by["full"]["train_seconds"]
    ratios = {"proactive_minus_full_mean_accuracy_points": round(points, 3),
              "proactive_time_share_of_full": round(share, 4),
              "periodic_minus_full_mean_accuracy_points":
                  round(100 * (by["periodic"]["mean_accuracy"] - by["full"]["mean_accuracy"]), 3),
              "periodic_time_share_of_full": round(by["periodic"]["train_seconds"] / by["full"]["train_seconds"], 4),
              "proactive_sample_share_of_full":
                  round(by["proactive"]["trained_samples"] / by["full"]["trained_samples"], 4)}
    targets = {"proactive_minus_full_mean_accuracy_points": f">= -{TARGET_POINTS}",
               "proactive_time_share_of_full": f"<= {TARGET_TIME}"}
    met = points >= -TARGET_POINTS and share <= TARGET_TIME
    notes = [] if met else [f"missed: proactive is {points:+.2f} points vs full at {share:.1%} of its training time"]
    notes.append(f"wall {wall:.0f} s for the whole run; peak RSS {peak_rss_mb()} MB")
    write_result("proactive_stream", {"chunks": chunks, "samples_per_chunk": samples, "arch": "cnn1d",
                                      "full_epochs": epochs, "batch_size": args.batch_size,
                                      "new_per_batch": args.new_per_batch, "history": "uniform",
                                      "passes": args.passes, "lr_scale": args.lr_scale, "periodic_every": args.every,
                                      "threads": args.threads, "seed": args.seed},
                 results, ratios, targets, met, "; ".join(notes), out=args.out, quick=args.quick)


if __name__ == "__main__":
    main()
