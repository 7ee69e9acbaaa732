"""Sparse deployment: bytes per update, deployed-replica accuracy and sender overhead at rho = 1e-2, 1e-3, 1e-4.

Per seed, one proactive training run over a drifting MNIST-1D stream (first chunk from scratch,
then a proactive step per chunk). Following dense training, every ``--ship-every`` training batches
(and at the end of each step) every (rho, scope) sender ships the top-k update (error feedback) as
serialised bytes and its replica applies them, side by side on the same trained weights; sparse
training is its own run per rho. Per sender: the update's payload (indices and values) and its
whole file (header included) relative to the dense weights; the replica's accuracy on the current
test chunk relative to the dense model of the first scope; the time to train and ship relative to
that dense training. The targets are judged on ``--judge``. Each (seed, scope) runs as its own
task (``--jobs`` processes): the same seeded training, repeated per scope (deterministic on CPU)."""

from __future__ import annotations

import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from benchmarks._common import parser, peak_rss_mb, write_result

RHOS = (1e-2, 1e-3, 1e-4)
TARGET_BYTES = 1 / 500  # a whole update file (header included) relative to dense at rho = 1e-3
TARGET_POINTS = 1.0  # replica within this many accuracy points of the dense model at rho = 1e-3


def run_stream(seed: int, scope: str, args, chunks: int, samples: int, epochs: int) -> dict:
    """One stream: per (rho, scope) sender, its payload and file ratios, replica accuracies and seconds.

    ``scope`` "sparse-tensor@<rho>" or "sparse-model@<rho>": sparse training, one run per rho; a scope
    may name its passes over each new chunk ("sparse-tensor:6@0.001"; default: ``ContinualConfig``'s)."""
    import torch

    from curation.config import load_settings
    from curation.continual.data import StreamData, load_chunk
    from curation.continual.proactive import ContinualConfig, evaluate, train_step
    from curation.data.stream import add_chunk, drifting_mnist1d
    from curation.sparse_updates import Replica, SparseTraining, SparseUpdate, Sparsifier, dense_bytes
    from curation.training.config import TrainConfig
    from curation.training.trainer import Callback
    from models import ModelSpec, build

    torch.set_num_threads(args.threads)
    sparse = "@" in scope
    systems = [(float(scope.split("@")[1]), scope.split("@")[0])] if sparse else [(rho, scope) for rho in RHOS]
    how, _, passes = scope.split("@")[0].partition(":")
    top = "model" if how.endswith("model") else "tensor"  # "step" ships per tensor, once per proactive step

    class Ship(Callback):
        """Every ``--ship-every`` batches every sender ships the model as it is now (``step``: after training)."""

        pending = 0  # batches since the last update

        def on_batch_end(self, epoch: int, batch: int) -> None:
            self.pending += 1
            if how != "step" and self.pending == args.ship_every:
                ship()
                self.pending = 0

    def ship() -> None:
        state = model.state_dict()
        for key in systems:
            tick = time.perf_counter()
            deliver(key, senders[key].update(state, f"chunk-{c}"))
            out[key]["seconds"] += time.perf_counter() - tick

    def deliver(key, update) -> None:
        payload = update.to_bytes()
        replicas[key].apply(SparseUpdate.from_bytes(payload))
        out[key]["payload"].append(update.nbytes / dense)
        out[key]["file"].append(len(payload) / dense)

    class Timed(SparseTraining):
        def flush(self) -> None:
            tick = time.perf_counter()
            super().flush()
            out[systems[0]]["seconds"] += time.perf_counter() - tick

    train = TrainConfig(
        arch=args.arch, epochs=epochs, batch_size=128, seed=seed, device="cpu", optimizer=args.optimizer, lr=args.lr
    )
    config = ContinualConfig(**({"passes": int(passes)} if passes else {}))
    out = {key: {"payload": [], "file": [], "accuracy": [], "seconds": 0.0} for key in systems}
    senders, replicas, trained, train_seconds, dense = {}, {}, [], 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(home=Path(tmp), dvc=False)
        loaded = []
        for c in range(chunks):
            info = add_chunk(settings, "stream", drifting_mnist1d(c, samples=samples, seed=seed))
            loaded.append(load_chunk(settings, info, torch.device("cpu")))
            stream, spec = StreamData.of(loaded), ModelSpec.of(info)
            if c == 0:  # the base, deployed in full once
                step = train_step(stream, 1, None, config, train, spec, step=c)
                model, optimizer = step.model, step.optimizer
                dense = dense_bytes(model.state_dict())
                for rho, kind in systems:
                    senders[rho, kind] = Sparsifier(rho, "base", scope=top, carry=sparse).start(model.state_dict())
                    replicas[rho, kind] = Replica(model.state_dict(), "base")
                continue
            before = sum(r["seconds"] for r in out.values())
            callback = (
                Timed(senders[systems[0]], lambda update: deliver(systems[0], update), f"chunk-{c}", args.ship_every)
                if sparse
                else Ship()
            )
            step = train_step(stream, 1, model, config, train, spec, step=c, optimizer=optimizer, callbacks=[callback])
            optimizer = step.optimizer
            # the callbacks ran inside the training loop: their seconds are the senders'
            train_seconds += step.ledger.train_seconds - (sum(r["seconds"] for r in out.values()) - before)
            if callback.pending and sparse:  # what the last batches left
                callback.flush()
            elif callback.pending:  # likewise (``step``: the step's one update)
                ship()
            trained.append(step.accuracy)
            line = [f"seed {seed} chunk {c}: trained {step.accuracy:.4f}"]
            for rho, kind in systems:
                deployed = build(train.arch, spec)
                deployed.load_state_dict(replicas[rho, kind].state)
                out[rho, kind]["accuracy"].append(evaluate(deployed, stream, train))
                line.append(f"{kind} {rho:g} {out[rho, kind]['accuracy'][-1]:.4f}")
            print("  ".join(line), flush=True)
    return {"systems": out, "train_seconds": train_seconds, "dense": dense, "trained": trained}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--chunks", type=int, default=8)
    p.add_argument("--samples", type=int, default=2000, help="samples per chunk (20%% test)")
    p.add_argument("--arch", default="mlp")
    p.add_argument("--epochs", type=int, default=20, help="epochs on the first chunk")
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default=None, help="default: the architecture's")
    p.add_argument("--lr", type=float, default=None, help="default: the architecture's")
    p.add_argument("--ship-every", type=int, default=1, help="training batches between shipped updates")
    p.add_argument(
        "--scopes",
        default="step,tensor,model,sparse-tensor,sparse-model,sparse-tensor:6,tensor:6",
        help="which senders: top-k per tensor (the paper's rule) or over the whole model, following dense "
        "training (every --ship-every batches); step: per tensor, one update per proactive step (the "
        "retrain lineage's --ship model); sparse-tensor, sparse-model: sparse training (its own run per "
        "rho; the lineage's --ship batch). ':N' trains N passes over each new chunk instead of the "
        "default. The first (tensor, model or step, default passes) is the dense training the others are "
        "compared to",
    )
    p.add_argument("--judge", default="sparse-tensor:6", help="the scope the targets are judged on")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seeds", default="0,1,2,3", help="comma-separated stream seeds")
    p.add_argument("--jobs", type=int, default=4, help="(seed, scope) tasks at once, each its own process")
    args = p.parse_args()
    chunks, samples, epochs = (3, 600, 3) if args.quick else (args.chunks, args.samples, args.epochs)
    seeds = [int(s) for s in args.seeds.split(",")][: 1 if args.quick else None]

    from curation.continual.proactive import ContinualConfig

    scopes = args.scopes.split(",")
    for scope in scopes:
        kind, _, passes = scope.partition(":")
        if kind not in ("tensor", "model", "step", "sparse-tensor", "sparse-model") or not passes.isdigit() and passes:
            p.error(f"unknown scope {scope!r}: use tensor, model, step, sparse-tensor or sparse-model, with :N passes")
    if args.judge not in scopes:
        p.error(f"--judge {args.judge} is not among --scopes")
    if scopes[0] not in ("tensor", "model", "step"):
        p.error(
            "--scopes must start with a dense-training scope at the default passes (tensor, model or step): "
            "the reference"
        )
    runs_of = {
        scope: [f"{scope}@{rho:g}" for rho in RHOS] if scope.startswith("sparse") else [scope] for scope in scopes
    }
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        tasks = {
            (seed, run): pool.submit(run_stream, seed, run, args, chunks, samples, epochs)
            for seed in seeds
            for scope in scopes
            for run in runs_of[scope]
        }
        runs = {key: task.result() for key, task in tasks.items()}
    reference = {seed: runs[seed, scopes[0]] for seed in seeds}  # dense training
    dense = reference[seeds[0]]["dense"]
    dense_seconds = sum(r["train_seconds"] for r in reference.values())
    results = []
    for scope in scopes:
        for rho in RHOS:
            run = f"{scope}@{rho:g}" if scope.startswith("sparse") else scope
            per = [runs[seed, run]["systems"][rho, scope] for seed in seeds]
            points = [
                [100 * (a - b) for a, b in zip(reference[seed]["trained"], r["accuracy"])]
                for seed, r in zip(seeds, per)
            ]
            own_training = sum(runs[seed, run]["train_seconds"] for seed in seeds)
            sender = sum(r["seconds"] for r in per)
            trained = [
                100 * (b - a) for seed in seeds for a, b in zip(reference[seed]["trained"], runs[seed, run]["trained"])
            ]
            results.append(
                {
                    "system": f"{scope} rho={rho:g}",
                    "rho": rho,
                    "scope": scope,
                    "trained_vs_dense_points": statistics.fmean(trained),
                    "payload_bytes_ratio": statistics.fmean(x for r in per for x in r["payload"]),
                    "file_bytes_ratio": statistics.fmean(x for r in per for x in r["file"]),
                    "max_file_bytes_ratio": max(x for r in per for x in r["file"]),
                    "dense_bytes": dense,
                    "mean_accuracy_drop_points": statistics.fmean(x for seed in points for x in seed),
                    "mean_accuracy_drop_points_per_seed": [statistics.fmean(x) for x in points],
                    "accuracy_drop_points_per_chunk_per_seed": points,
                    "updates": sum(len(r["payload"]) for r in per),
                    "sender_seconds": sender,
                    "overhead_vs_training": sender / own_training,
                    "training_seconds_vs_dense": (own_training + sender) / dense_seconds,
                }
            )
    judged = [r for r in results if r["rho"] == 1e-3 and r["scope"] == args.judge]
    ref = judged[0] if judged else next(r for r in results if r["rho"] == 1e-3)
    ratios = {}
    for r in results:
        tag = f"rho_{r['rho']:g}" + ("" if r["scope"] == "tensor" else f"_{r['scope'].replace(':', '_p')}")
        ratios |= {
            f"payload_bytes_ratio_{tag}": round(r["payload_bytes_ratio"], 6),
            f"file_bytes_ratio_{tag}": round(r["file_bytes_ratio"], 6),
            f"accuracy_drop_points_{tag}": round(r["mean_accuracy_drop_points"], 3),
            f"training_time_overhead_{tag}": round(r["overhead_vs_training"], 4),
            f"training_seconds_vs_dense_{tag}": round(r["training_seconds_vs_dense"], 3),
        }
    tag = "rho_0.001" + ("" if ref["scope"] == "tensor" else f"_{ref['scope'].replace(':', '_p')}")
    targets = {
        f"file_bytes_ratio_{tag}": f"<= {TARGET_BYTES:.4g}",
        f"accuracy_drop_points_{tag}": f"<= {TARGET_POINTS}",
    }
    bytes_met = ref["file_bytes_ratio"] <= TARGET_BYTES
    points_met = ref["mean_accuracy_drop_points"] <= TARGET_POINTS
    notes = [
        f"{args.arch}: {dense} dense bytes; dense training {dense_seconds:.1f} s over {len(seeds)} x "
        f"{chunks - 1} proactive steps; peak RSS {peak_rss_mb()} MB; accuracy drops are against the dense-trained "
        f"model ({scopes[0]} run) on each current test chunk; targets judged on {ref['scope']} scope"
    ]
    if not bytes_met:
        notes.append(
            f"bytes missed at rho 1e-3: whole update file {ref['file_bytes_ratio']:.5f} of dense "
            f"(1/{1 / ref['file_bytes_ratio']:.0f})"
        )
    if not points_met:
        notes.append(f"accuracy missed at rho 1e-3: replica {ref['mean_accuracy_drop_points']:.2f} points below")
    write_result(
        "sparse_deployment",
        {
            "chunks": chunks,
            "samples_per_chunk": samples,
            "arch": args.arch,
            "first_epochs": epochs,
            "ship_every_batches": args.ship_every,
            "optimizer": args.optimizer,
            "lr": args.lr,
            "continual": ContinualConfig().model_dump(),
            "rhos": list(RHOS),
            "scopes": args.scopes.split(","),
            "threads": args.threads,
            "seeds": seeds,
        },
        results,
        ratios,
        targets,
        bytes_met and points_met,
        "; ".join(notes),
        out=args.out,
        quick=args.quick,
    )


if __name__ == "__main__":
    main()
