"""Data-parallel training: ``TrainConfig.nproc`` rank processes under torch.distributed, one training run.

The process that checked everything and started the catalog and MLflow runs starts the ranks (torchrun's
environment: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK; gloo on the CPU, NCCL with one GPU per
rank), hands them the run's state through its checkpoint file and waits. Every rank restores that checkpoint
(the same model, ledger and RNG state), trains its share of every global batch (see ``curation.training.trainer``)
and rank 0 replaces the checkpoint after each epoch. The parent forwards each checkpointed epoch to the run's
callbacks (MLflow, progress) and, once every rank is done, restores the last checkpoint as the run's result.
A rank that dies or raises ends the others and fails the run in one line; the last epoch's checkpoint stays,
so ``--resume`` continues it.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.multiprocessing.spawn import ProcessException, ProcessRaisedException

from curation.config import Settings
from curation.data.versions import open_version
from curation.errors import CurationError
from curation.selection.plans import Plan
from curation.training.checkpoint import load_checkpoint, save_checkpoint
from curation.training.config import TrainConfig
from curation.training.data import TrainingData
from curation.training.selector import OnlineSelector
from curation.training.trainer import Trainer, TrainResult
from models import ModelSpec, build

POLL_SECONDS = 0.5  # how often the parent looks for a newly checkpointed epoch


@dataclass(frozen=True)
class _Job:
    """What every rank needs to rebuild the run's trainer (plain, picklable values)."""

    settings: Settings
    version_id: int
    config: TrainConfig
    plan: Plan
    selector: OnlineSelector | None  # each rank restarts its copy, then restores the checkpoint's state
    checkpoint: Path
    port: int


def check(config: TrainConfig, device: torch.device) -> None:
    """One-line errors, before a run is recorded, for what data-parallel training does not do."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise CurationError(
            f"curation train runs under a launcher with WORLD_SIZE={os.environ['WORLD_SIZE']} (torchrun?); it starts "
            "its own training processes",
            "run it once, without torchrun, with --nproc N",
        )
    if config.nproc == 1:
        return
    if device.type == "cuda" and config.nproc > torch.cuda.device_count():
        raise CurationError(
            f"--nproc {config.nproc} needs one GPU per process; {torch.cuda.device_count()} found",
            f"use --nproc {torch.cuda.device_count()} or fewer, or --device cpu",
        )


def fit(trainer: Trainer, plan: Plan, settings: Settings) -> TrainResult:
    """``trainer.fit(plan)`` in ``trainer.config.nproc`` rank processes; ``trainer`` (the parent's, with its
    checkpoint path, callbacks and possibly a resumed state) ends with the run's final state."""
    config = trainer.config
    if trainer.epoch == 0:  # the ranks start from this state (a resumed run: from its checkpoint)
        save_checkpoint(trainer.checkpoint, trainer.state(plan))
    for cb in trainer.callbacks:
        cb.trainer = trainer
        cb.on_fit_start(config, trainer.epoch)
    job = _Job(settings, trainer.data.version_id, config, plan, trainer.selector, trainer.checkpoint, _free_port())
    ranks = mp.start_processes(_rank, (job,), nprocs=config.nproc, join=False, start_method="spawn")
    seen = (len(trainer.history), len(trainer.evaluations), None)
    quiet = logging.getLogger("torch.multiprocessing.spawn")  # it warns of each rank it ends after a failure
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        while not ranks.join(POLL_SECONDS):
            seen = _forward_epochs(trainer, seen)
    except ProcessException as exc:
        raise CurationError(
            f"training rank {exc.error_index} of {config.nproc} failed: {_reason(exc)}",
            "fix the cause and continue the run with --resume (from its last completed epoch)",
        ) from None
    finally:
        quiet.setLevel(level)
        for process in ranks.processes:  # the parent was interrupted: no rank outlives it
            if process.is_alive():
                process.kill()
                process.join()
    _forward_epochs(trainer, seen)
    trainer.resume(plan)
    return trainer.fit(plan)  # nothing left to train: the result of the restored state


def _forward_epochs(trainer: Trainer, seen: tuple[int, int, int | None]) -> tuple[int, int, int | None]:
    """Hand the epochs and evaluations checkpointed since ``seen`` to the trainer's callbacks."""
    epochs, evaluations, stamp = seen
    now = trainer.checkpoint.stat().st_mtime_ns
    if now == stamp:
        return seen
    state = load_checkpoint(trainer.checkpoint)
    for record in state["evaluations"][evaluations:]:
        for cb in trainer.callbacks:
            cb.on_evaluate(record)
    for record in state["history"][epochs:]:
        for cb in trainer.callbacks:
            cb.on_epoch_end(record)
    return len(state["history"]), len(state["evaluations"]), now


def _reason(exc: ProcessException) -> str:
    """One line: a rank's exception (the last line of its traceback) or the signal that ended it."""
    if isinstance(exc, ProcessRaisedException):
        lines = [line for line in str(exc).splitlines() if line.strip()]
        return (lines[-1] if lines else "an exception")[:300]
    return str(exc)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, job: _Job) -> None:
    """One rank: join the process group, restore the run's checkpoint, train; rank 0 writes the checkpoints."""
    world = job.config.nproc
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(job.port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    cuda = job.config.device != "cpu" and torch.cuda.is_available()
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(max(1, torch.get_num_threads() // world))  # the ranks share the CPU cores
    dist.init_process_group("nccl" if cuda else "gloo")
    info, reader = open_version(job.settings, job.version_id)
    data = TrainingData.load(reader, info.id, info.feature_shape, device, job.config.workers, job.config.data_path)
    try:
        trainer = Trainer(
            build(job.config.arch, ModelSpec.of(info)),
            data,
            job.config,
            selector=job.selector,
            checkpoint=job.checkpoint if rank == 0 else None,
        )
        trainer.restore(load_checkpoint(job.checkpoint), job.plan)
        trainer.fit(job.plan)
        dist.barrier()  # rank 0's last checkpoint is written before any rank leaves the group
    finally:
        data.close()
        dist.destroy_process_group()
