"""Share of a training epoch spent loading batches: 50,000-sample MNIST-1D epoch, the ConvNet's defaults.

Side by side in one run, same model, batch size, seed and threads: the Trainer with the train split
held as one tensor (a batch is one ``index_select``), the Trainer with the split streamed from the
version's Parquet file (``--data-path stream``: 2 DataLoader worker processes read row-group pieces
ahead of the step), and the textbook PyTorch loop over ``DataLoader(TensorDataset(...), shuffle=True)``
(per-sample ``__getitem__`` plus ``collate``). Loading time is the time spent waiting for each batch;
the share is loading over the epoch's training time.

At scale (``--scale-rows``, default 1M rows of 40 features, 20% test, the ``bounded_memory`` source): the
same Trainer trains the ``mlp`` (the cheapest step, so the one where reading shows most) on full epochs
and on soft-sampling 0.1 epochs, with both splits in memory and both streamed; throughput is trained
samples per second of training time (evaluation excluded), median over epochs, streamed over in memory.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks._common import parser, peak_rss_mb, write_result

TARGET_SHARE = 0.10
TARGET_STREAMED = 0.7  # streamed throughput over in-memory throughput, at scale


def dataloader_epoch(model, optimizer, loader, label_smoothing: float) -> tuple[float, float]:
    """One epoch of the standard loop; returns (seconds, seconds spent waiting for batches)."""
    import torch.nn.functional as F

    start, loading = time.perf_counter(), 0.0
    batches = iter(loader)
    while True:
        tick = time.perf_counter()
        try:
            x, y = next(batches)
        except StopIteration:
            break
        loading += time.perf_counter() - tick
        loss = F.cross_entropy(model(x), y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start, loading


def at_scale(rows: int, workers: int, epochs: int) -> tuple[list[dict], dict]:
    """Training throughput of full and soft 0.1 epochs on a ``rows``-row version, in memory and streamed."""
    import torch

    from benchmarks.bounded_memory import write_source
    from curation.config import load_settings
    from curation.data import sources
    from curation.data.versions import add_version, open_version
    from curation.selection.plans import FullPlan
    from curation.selection.sampling import SampledPlan
    from curation.training import TrainConfig, Trainer, TrainingData
    from models import ModelSpec, build

    results, ratios = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-data-path-scale-") as home:
        source = Path(home) / "big.parquet"
        write_source(source, rows)
        settings = load_settings(home=Path(home), dvc=False)
        info = add_version(settings, sources.from_file(source, split_column="split"))
        source.unlink()
        _, reader = open_version(settings, info.id)
        config = TrainConfig(arch="mlp", epochs=epochs, seed=0).resolve(info.feature_shape)
        rates = {}
        for path in ("memory", "stream"):
            data = TrainingData.load(reader, info.id, info.feature_shape, torch.device("cpu"), workers, path)
            plans = {
                "full": FullPlan(info.id, data.train.sample_ids),
                "soft 0.1": SampledPlan(info.id, data.train.sample_ids, "soft", 0.1, seed=0),
            }
            for name, plan in plans.items():
                torch.manual_seed(0)
                history = Trainer(build(config.arch, ModelSpec.of(info)), data, config).fit(plan).history
                seconds = [b["seconds"] - a["seconds"] for a, b in zip([{"seconds": 0.0}, *history], history)]
                rate = statistics.median(r["trained_samples"] / s for r, s in zip(history, seconds))
                rates[name, path] = rate
                results.append(
                    {
                        "system": f"{rows:,} rows, {name} epochs, splits {path}",
                        "samples_per_second": round(rate),
                        "epoch_seconds": round(statistics.median(seconds), 2),
                        "accuracy": history[-1]["accuracy"],
                        "data": data.placement,
                    }
                )
            data.close()
    for name in ("full", "soft 0.1"):
        ratios[f"streamed throughput / in memory, {name}"] = round(rates[name, "stream"] / rates[name, "memory"], 3)
    return results, ratios


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--train-samples", type=int, default=50_000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="worker processes of the streamed Trainer")
    p.add_argument("--scale-rows", type=int, default=1_000_000, help="rows of the at-scale comparison (0: skip)")
    p.add_argument("--scale-epochs", type=int, default=2, help="epochs of each at-scale run")
    args = p.parse_args()
    train_samples, epochs = (10_000, 1) if args.quick else (args.train_samples, args.epochs)
    scale_rows = 100_000 if args.quick and args.scale_rows else args.scale_rows

    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from curation.config import load_settings
    from curation.data import sources
    from curation.data.versions import add_version, open_version
    from curation.selection.plans import FullPlan
    from curation.training import TrainConfig, Trainer, TrainingData
    from models import ModelSpec, build

    with tempfile.TemporaryDirectory(prefix="bench-data-path-") as home:
        settings = load_settings(home=Path(home), dvc=False)
        info = add_version(settings, sources.mnist1d(samples=int(train_samples / 0.8)))
        _, reader = open_version(settings, info.id)
        tick = time.perf_counter()
        data = TrainingData.load(reader, info.id, info.feature_shape, torch.device("cpu"))
        load_s = time.perf_counter() - tick
        config = TrainConfig(epochs=epochs, seed=0).resolve(info.feature_shape)

        def epochs_of(split_data):
            torch.manual_seed(0)
            trainer = Trainer(build(config.arch, ModelSpec.of(info)), split_data, config)
            history = trainer.fit(FullPlan(info.id, split_data.train.sample_ids)).history
            seconds = [b["seconds"] - a["seconds"] for a, b in zip([{"seconds": 0.0}, *history], history)]
            return [(s, r["data_seconds"]) for s, r in zip(seconds, history)], history[-1]["accuracy"]

        ours, accuracy = epochs_of(data)
        streamed_data = TrainingData.load(
            reader, info.id, info.feature_shape, torch.device("cpu"), args.workers, "stream"
        )
        streamed, streamed_accuracy = epochs_of(streamed_data)
        streamed_data.close()

        torch.manual_seed(0)
        model = build(config.arch, ModelSpec.of(info))
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        loader = DataLoader(
            TensorDataset(data.train.features, data.train.labels),
            batch_size=config.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(0),
        )
        theirs = [dataloader_epoch(model, optimizer, loader, config.label_smoothing) for _ in range(epochs)]

    def summary(runs):
        epoch_s = statistics.median(s for s, _ in runs)
        share = statistics.median(d / s for s, d in runs)
        return round(epoch_s, 3), round(share, 4)

    ours_s, ours_share = summary(ours)
    streamed_s, streamed_share = summary(streamed)
    loader_s, loader_share = summary(theirs)
    results = [
        {
            "system": "curation Trainer (split in one tensor, index_select per batch)",
            "epoch_seconds": ours_s,
            "loading_share": ours_share,
            "accuracy": accuracy,
            "batches_per_epoch": -(-len(data.train) // config.batch_size),
            "peak_rss_mb": peak_rss_mb(),
        },
        {
            "system": f"curation Trainer, split streamed from Parquet ({args.workers} worker processes)",
            "epoch_seconds": streamed_s,
            "loading_share": streamed_share,
            "accuracy": streamed_accuracy,
        },
        {
            "system": "torch DataLoader(TensorDataset, shuffle=True), same model and step",
            "epoch_seconds": loader_s,
            "loading_share": loader_share,
        },
    ]
    scale_results, scale_ratios = at_scale(scale_rows, args.workers, args.scale_epochs) if scale_rows else ([], {})
    results += scale_results
    ratios = {
        **scale_ratios,
        "loading_share": ours_share,
        "loading_share_dataloader": loader_share,
        "loading_share_streamed": streamed_share,
        "streamed_epoch_seconds_vs_in_memory": round(streamed_s / ours_s, 2),
        "epoch_speedup_vs_dataloader": round(loader_s / ours_s, 2),
    }
    write_result(
        "data_path",
        {
            "train_samples": len(data.train),
            "epochs": epochs,
            "arch": config.arch,
            "batch_size": config.batch_size,
            "threads": torch.get_num_threads(),
            "streamed_workers": args.workers,
            "split_load_seconds": round(load_s, 3),
            "scale_rows": scale_rows,
            "scale_arch": "mlp",
            "scale_epochs": args.scale_epochs,
        },
        results,
        ratios,
        {"loading_share": f"<= {TARGET_SHARE}", "loading_share_streamed": f"<= {TARGET_SHARE}"}
        | {k: f">= {TARGET_STREAMED}" for k in scale_ratios},
        ours_share <= TARGET_SHARE
        and streamed_share <= TARGET_SHARE
        and all(v >= TARGET_STREAMED for v in scale_ratios.values()),
        notes="medians over epochs; loading = time to produce each batch (CPU, so no transfer); "
        "the split is read from Parquet into memory once per run (split_load_seconds)",
        out=args.out,
        quick=args.quick,
    )


if __name__ == "__main__":
    main()
