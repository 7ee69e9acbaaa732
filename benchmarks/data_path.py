"""Share of a training epoch spent loading batches: 50,000-sample MNIST-1D epoch, the ConvNet's defaults.

Side by side in one run, same model, batch size, seed and threads: the Trainer with the train split
held as one tensor (a batch is one ``index_select``), the Trainer with the split streamed from the
version's Parquet file (``--data-path stream``: 2 DataLoader worker processes read row-group pieces
ahead of the step), and the textbook PyTorch loop over ``DataLoader(TensorDataset(...), shuffle=True)``
(per-sample ``__getitem__`` plus ``collate``). Loading time is the time spent waiting for each batch;
the share is loading over the epoch's training time.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks._common import parser, peak_rss_mb, write_result

TARGET_SHARE = 0.10


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


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--train-samples", type=int, default=50_000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="worker processes of the streamed Trainer")
    args = p.parse_args()
    train_samples, epochs = (10_000, 1) if args.quick else (args.train_samples, args.epochs)

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
    ratios = {
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
        },
        results,
        ratios,
        {"loading_share": f"<= {TARGET_SHARE}", "loading_share_streamed": f"<= {TARGET_SHARE}"},
        ours_share <= TARGET_SHARE and streamed_share <= TARGET_SHARE,
        notes="medians over epochs; loading = time to produce each batch (CPU, so no transfer); "
        "the split is read from Parquet into memory once per run (split_load_seconds)",
        out=args.out,
        quick=args.quick,
    )


if __name__ == "__main__":
    main()
