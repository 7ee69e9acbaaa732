"""Image decoding beside training: scikit-learn's digits (8x8 grayscale PNGs, upscaled to --size) as an image
version; PNG decoding samples/s in 2 DataLoader worker processes (the path training uses) and in this
process, beside the default 2D ResNet's training steps/s on the decoded images.

Decoding keeps up with training when decode samples/s (2 workers, once they run) >= training samples/s (steps/s x
batch). Starting the workers is a fixed cost of each pass, reported apart: seconds to their first decoded piece and
their share of an epoch's training time; the whole pass's rate (start included) is reported too, and the rate of
the pass training makes (``split_tables`` decodes here when the first chunk says that is quicker than starting
the workers).
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

from benchmarks._common import parser, peak_rss_mb, write_result


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--size", type=int, default=8, help="image side in pixels (digits are 8x8)")
    p.add_argument("--copies", type=int, default=4, help="times the 1,797 digits are repeated")
    p.add_argument("--steps", type=int, default=50, help="training steps timed")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    copies, steps = (1, 10) if args.quick else (args.copies, args.steps)

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from PIL import Image
    from sklearn.datasets import load_digits

    from curation.config import load_settings
    from curation.data import sources
    from curation.data.versions import add_version, open_version
    from curation.training import TrainConfig, Trainer
    from curation.training import data as training_data
    from curation.training.data import TrainingData, split_tables
    from models import ModelSpec, build

    bunch = load_digits()
    blobs = []
    for image in np.tile(bunch.images, (copies, 1, 1)):
        buffer = io.BytesIO()
        Image.fromarray((image * 16).clip(0, 255).astype(np.uint8)).resize((args.size, args.size)).save(buffer, "PNG")
        blobs.append(buffer.getvalue())
    labels = np.tile(bunch.target, copies)
    with tempfile.TemporaryDirectory(prefix="bench-image-decode-") as home:
        path = Path(home) / "digits.parquet"
        pq.write_table(pa.table({"image": pa.array(blobs, pa.binary()), "label": labels}), path)
        settings = load_settings(home=Path(home), dvc=False)
        info = add_version(settings, sources.from_file(path))
        _, reader = open_version(settings, info.id)
        n_train = info.splits["train"]

        def decode(workers: int) -> tuple[float, list[tuple[float, int]]]:
            """(samples/s of the whole pass, (seconds since the start, rows) of each piece)."""
            tick, pieces = time.perf_counter(), []
            for table in split_tables(reader, "train", workers):
                pieces.append((time.perf_counter() - tick, table.num_rows))
            return n_train / pieces[-1][0], pieces

        in_process, as_training = decode(0)[0], decode(args.workers)[0]  # training: workers only where they pay
        chosen, training_data.WORKER_START_SECONDS = training_data.WORKER_START_SECONDS, 0.0
        try:  # the workers whatever the size, as for a split too big to decode here
            with_workers, pieces = decode(args.workers)
        finally:
            training_data.WORKER_START_SECONDS = chosen
        if len(pieces) < 3:
            p.error(f"{n_train} train images are too few to time the workers: raise --copies")
        # the first chunk is decoded here (it times the choice); the workers' first piece ends their start
        (here_done, here_rows), (first_done, first_rows) = pieces[:2]
        start = first_done - here_done
        steady = (n_train - here_rows - first_rows) / (pieces[-1][0] - first_done)
        data = TrainingData.load(reader, info.id, info.feature_shape, torch.device("cpu"), args.workers)
        config = TrainConfig(seed=0, device="cpu").resolve(info.feature_shape, images=True)
        torch.manual_seed(0)
        trainer = Trainer(build(config.arch, ModelSpec.of(info)), data, config)
        rng = np.random.default_rng(0)
        batches = [rng.choice(n_train, config.batch_size, replace=False) for _ in range(steps + 3)]
        trainer.train_batches(batches[:3], lambda i, n: config.lr)  # warm-up
        tick = time.perf_counter()
        trainer.train_batches(batches[3:], lambda i, n: config.lr)
        steps_per_s = steps / (time.perf_counter() - tick)

    train_samples_per_s = steps_per_s * config.batch_size
    results = [
        {
            "system": f"PNG decode, {args.workers} DataLoader workers",
            "samples_per_s": round(with_workers, 1),
            "seconds_to_their_first_piece": round(start, 2),
            "samples_per_s_after_their_first_piece": round(steady, 1),
        },
        {"system": "PNG decode, in the main process", "samples_per_s": round(in_process, 1)},
        {"system": f"PNG decode as training does it (--workers {args.workers})", "samples_per_s": round(as_training)},
        {
            "system": f"{config.arch} training (batch {config.batch_size})",
            "steps_per_s": round(steps_per_s, 2),
            "samples_per_s": round(train_samples_per_s, 1),
            "peak_rss_mb": peak_rss_mb(),
        },
    ]
    ratio = round(steady / train_samples_per_s, 2)
    write_result(
        "image_decode",
        {
            "images": len(blobs),
            "train_images": n_train,
            "size": args.size,
            "workers": args.workers,
            "steps": steps,
            "arch": config.arch,
            "threads": torch.get_num_threads(),
        },
        results,
        {
            "decode_over_training_samples_per_s": ratio,
            "whole_pass_decode_over_training_samples_per_s": round(with_workers / train_samples_per_s, 2),
            "as_training_decodes_over_training_samples_per_s": round(as_training / train_samples_per_s, 2),
            "worker_start_over_epoch_training_seconds": round(start * train_samples_per_s / n_train, 3),
        },
        {"decode_over_training_samples_per_s": ">= 1"},
        ratio >= 1,
        notes="decode rates include reading the split's Parquet row groups; with workers the pass also starts "
        "them (forkserver processes that import torch, each with its own reader): the target compares the rate "
        "once they run with training's, the start is reported as seconds and as a share of an epoch's training",
        out=args.out,
        quick=args.quick,
    )


if __name__ == "__main__":
    main()
