"""The Trainer: any plan (or an online selector) drives it; every sample it touches goes into the ledger.

Per epoch: the plan's ids, shuffled from (seed, epoch); forward, backward and step per batch; an
evaluation on the test split; a checkpoint (model, optimizer, RNG, ledger, history) written
atomically. Resuming from that checkpoint replays the rest of the run bit for bit on the CPU.

With ``eval_every`` the evaluations follow compute instead of epochs: one each time the run's total
compute (training + selection FLOPs) crosses a multiple of ``eval_every`` x one full-data epoch's
training FLOPs, plus one at the start and one at the end (``Trainer.evaluations``); runs of any epoch
size are then compared at the same compute. An online selector scores ``candidate_batch_size`` rows
per step and trains in batches of ``batch_size``; it hears each batch's per-example training losses and
may weigh them (InfoBatch).

With ``budget`` (a share of the full run's backward samples, N x ``epochs``) the run lasts as many
epochs as the budget takes, stops when exactly that many samples have been backpropagated, and its
learning rate decays linearly to 0 at that last step (budgeted training, docs/papers.md section 6).

In a torch.distributed process group (data-parallel training, ``curation.training.parallel``) every rank
walks the same global batches and trains its share of each (rows ``rank::world``) through
DistributedDataParallel; the ledger, the backward counts and the budget follow the global batches, so they
are the same on every rank and add up to the single-process ones. Rank 0 evaluates and writes the checkpoint.
An online selector runs on every rank: each rank scores its share of the candidates, and the selector hears
the losses gathered from all ranks (``_gathered``), so every rank's copy decides the same rows.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from curation.data.transforms import augment
from curation.errors import CurationError
from curation.faults import kill_point
from curation.metrics.ledger import BACKWARD_FACTOR, ComputeLedger, forward_flops_per_sample
from curation.selection.plans import Plan
from curation.training.checkpoint import load_checkpoint, save_checkpoint
from curation.training.config import TrainConfig
from curation.training.data import TrainingData
from curation.training.selector import OnlineSelector

EVAL_BATCH = {"cpu": 1024, "cuda": 8192}  # rows per inference forward (evaluation, selection), per device type
SGD_MOMENTUM = 0.9
RESUME_IGNORES = {"device", "compile", "data_path", "nproc"}  # settings a resumed run may change (not the path taken)


class Callback:
    """Hooks into the loop; override what you need. ``trainer`` is the Trainer it is attached to."""

    trainer: Trainer | None = None

    def on_fit_start(self, config: TrainConfig, epoch: int) -> None:
        """Before the first epoch to train, with the resolved config and the epochs already done."""

    def on_batch_end(self, epoch: int, batch: int) -> None:
        """After each optimizer step; ``epoch`` is the 0-based epoch index."""

    def on_epoch_end(self, record: dict) -> None:
        """After the epoch's evaluation and checkpoint, with the epoch's record."""

    def on_evaluate(self, record: dict) -> None:
        """After each evaluation on the compute schedule (``eval_every``), with its record."""


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict]
    ledger: ComputeLedger
    checkpoint: Path | None
    evaluations: list[dict]  # the compute-scheduled evaluations (empty without eval_every)
    occupancy: list[int]  # how many train rows were backpropagated 0, 1, 2, ... times


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; 'cuda' without a GPU is a user error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise CurationError("--device cuda but no CUDA device is available", "use --device auto or cpu")
    return torch.device("cuda" if name in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


def amp_dtype(setting: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``TrainConfig.amp`` on ``device`` (None: float32 throughout). Unset: bf16 on a GPU
    that supports it, else fp16; off on the CPU."""
    cuda = device.type == "cuda"
    if setting == "fp16" and not cuda:
        raise CurationError("--amp fp16 needs a CUDA device", "use --amp bf16 or --amp off on the CPU")
    if setting == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise CurationError(
            f"--amp bf16 is not supported by {torch.cuda.get_device_name(device)}", "use --amp fp16 or --amp off"
        )
    if setting is None:
        setting = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "off"
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[setting]


def memory_format(model: nn.Module, feature_shape: Sequence[int], device: torch.device) -> torch.memory_format:
    """channels_last for image batches (N, C, H, W) into a model with 2D convolutions on a GPU (cuDNN's NHWC
    kernels run on the tensor cores without layout transposes); else the default contiguous layout."""
    if device.type == "cuda" and len(feature_shape) == 3 and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return torch.channels_last
    return torch.contiguous_format


def inference_batch(device: torch.device) -> int:
    """Rows per inference forward (evaluation, selection, scoring): large on a GPU."""
    return EVAL_BATCH.get(device.type, EVAL_BATCH["cpu"])


def compiled(model: nn.Module, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.compile(model)``, sharing its parameters; inductor on the CPU needs a C++ compiler."""
    if device.type == "cpu" and not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "clang++")):
        raise CurationError(
            "--compile on the CPU needs a C++ compiler (g++ or clang++, or $CXX)",
            "install one, or train without --compile",
        )
    return torch.compile(model)


def distributed(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel (sharing its parameters); buffers are not synced per forward,
    so rank 0 can evaluate alone (BatchNorm statistics stay per rank, rank 0's are saved)."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None, forward_sync_buffers=False
    )


def epoch_rows(plan: Plan, data: TrainingData, epoch: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Train-split rows and loss weights of one epoch of a plan, validated (one-line errors)."""
    ids = np.asarray(plan.ids(epoch))
    if ids.size == 0:
        raise CurationError(
            f"plan {plan.method!r} has no sample ids for epoch {epoch}",
            "give a plan with at least one sample id per epoch",
        )
    if not np.issubdtype(ids.dtype, np.integer):
        raise CurationError(f"plan {plan.method!r} has sample ids of type {ids.dtype}", "give int64 sample ids")
    rows = data.train_rows(ids)
    weights = plan.weights(epoch)
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float32)
        if weights.shape != ids.shape:
            raise CurationError(
                f"plan {plan.method!r} has {weights.size} weights for {ids.size} ids in epoch {epoch}",
                "give one weight per sample id",
            )
        if not (np.isfinite(weights).all() and (weights >= 0).all()):
            raise CurationError(
                f"plan {plan.method!r} has negative or non-finite weights in epoch {epoch}", "give finite weights >= 0"
            )
    return rows, weights


def check_plan(plan: Plan, data: TrainingData, epochs: int, online: bool = False) -> str:
    """Validate every epoch of a plan against the data; returns the plan's fingerprint (md5 of ids and weights)."""
    if plan.version_id != data.version_id:
        raise CurationError(
            f"plan {plan.method!r} is for data set version {plan.version_id}, not version {data.version_id}",
            f"make a plan for version {data.version_id} or train version {plan.version_id}",
        )
    digest = hashlib.md5()
    for epoch in range(epochs):
        rows, weights = epoch_rows(plan, data, epoch)
        if online and weights is not None:
            raise CurationError(
                f"plan {plan.method!r} is weighted; an online selector trains unweighted",
                "use an unweighted plan with an online selector",
            )
        digest.update(np.int64(len(rows)).tobytes() + rows.tobytes())
        digest.update(b"-" if weights is None else weights.tobytes())
    return digest.hexdigest()


class Trainer:
    """Trains one model on one version's train split; see the module docstring."""

    def __init__(
        self,
        model: nn.Module,
        data: TrainingData,
        config: TrainConfig,
        *,
        selector: OnlineSelector | None = None,
        checkpoint: Path | None = None,
        callbacks: Sequence[Callback] = (),
    ):
        self.config = config.resolve(data.feature_shape)
        self.data = data
        self.device = data.train.device
        self.memory_format = memory_format(model, data.feature_shape, self.device)
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        self._forward = self.model if self.world == 1 else distributed(self.model, self.device)
        if self.config.compile:
            self._forward = compiled(self._forward, self.device)
        self.selector = selector
        if selector is not None:
            if data.streamed:
                raise CurationError(
                    f"the online selector {type(selector).__name__} reads rows at random; the train split is "
                    "streamed from disk",
                    "train it with --data-path memory on a machine where the split fits in memory",
                )
            selector.start(len(data.train))
        self.checkpoint = checkpoint
        self.callbacks: list[Callback] = []
        for cb in callbacks:
            self.add_callback(cb)
        self.ledger = ComputeLedger(flops_per_sample=forward_flops_per_sample(self.model, data.feature_shape))
        self.optimizer = self._optimizer()
        self.amp = amp_dtype(self.config.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)
        self.history: list[dict] = []
        self.evaluations: list[dict] = []  # the compute-scheduled evaluations (eval_every)
        self._clock: tuple[float, float, float, float] | None = None  # the current epoch's clock start
        self._cpu = (time.process_time(), 0.0)  # fit start, evaluation CPU seconds since
        self.counts = np.zeros(len(data.train), dtype=np.int32)  # backward passes per train row
        self.epoch = 0  # epochs completed
        self._plan: tuple[Plan, str] | None = None  # the plan bound to this trainer and its fingerprint
        self._augment_rng = torch.Generator().manual_seed(self.config.seed)  # --augment's crops and flips

    def add_callback(self, callback: Callback) -> Callback:
        """Attach a callback (its ``trainer`` becomes this trainer); returns it."""
        callback.trainer = self
        self.callbacks.append(callback)
        return callback

    @property
    def epoch_flops(self) -> float:
        """Training FLOPs of one full-data epoch (forward + backward of every train row): the compute unit."""
        return len(self.data.train) * (1 + BACKWARD_FACTOR) * self.ledger.flops_per_sample

    def _optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        if c.optimizer == "sgd":
            return torch.optim.SGD(self.model.parameters(), lr=c.lr, momentum=SGD_MOMENTUM, weight_decay=c.weight_decay)
        return torch.optim.AdamW(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)

    # -- the loop ------------------------------------------------------------------------------

    @property
    def budget_samples(self) -> int | None:
        """The backward samples a budgeted run may spend (``budget`` x N x ``epochs``), None without a budget."""
        budget = self.config.budget
        return None if budget is None else max(1, math.ceil(budget * len(self.data.train) * self.config.epochs - 1e-9))

    def _spent(self) -> bool:
        """Whether a budgeted run has backpropagated its budget's samples (False without a budget)."""
        return self.budget_samples is not None and self.ledger.backward_samples >= self.budget_samples

    def _done(self, epoch: int) -> bool:
        """Whether the run ends before ``epoch``: its epochs are done, or its budget is spent."""
        return self._spent() if self.budget_samples is not None else epoch >= self.config.epochs

    def fit(self, plan: Plan, resume: bool = False) -> TrainResult:
        """Train until ``config.epochs`` epochs are done (or the budget is spent); ``resume`` first restores
        the checkpoint file."""
        self._bind(plan)
        if resume:
            self.resume(plan)
        elif self.epoch == 0:
            torch.manual_seed(self.config.seed)
        self._cpu = (time.process_time(), 0.0)
        for cb in self.callbacks:
            cb.trainer = self  # also for callbacks appended to the list directly
            cb.on_fit_start(self.config, self.epoch)
        if self.config.eval_every and not self.evaluations:
            self._scheduled_evaluation(float(self.epoch))
        epoch = self.epoch
        while not self._done(epoch):
            stats = self._train_epoch(plan, epoch)
            if stats["trained"] == 0 and self.budget_samples is not None:
                raise CurationError(
                    f"epoch {epoch + 1} trained no sample, so the budget can never be spent",
                    "give a plan or selector that trains some samples every epoch",
                )
            record = self._record(epoch, stats)
            self.history.append(record)
            self.epoch = epoch + 1
            if self.checkpoint is not None:
                save_checkpoint(self.checkpoint, self.state(plan))
            for cb in self.callbacks:
                cb.on_epoch_end(record)
            epoch += 1
        if self.config.eval_every and self.evaluations[-1]["flops"] < self.ledger.total_flops:
            self._scheduled_evaluation(float(self.epoch))
        return TrainResult(
            self.model, self.history, self.ledger, self.checkpoint, self.evaluations, np.bincount(self.counts).tolist()
        )

    def resume(self, plan: Plan) -> None:
        """Restore the state saved in the checkpoint file (validated against this trainer and plan)."""
        if self.checkpoint is None:
            raise CurationError(
                "nothing to resume from: this trainer has no checkpoint path", "pass checkpoint=... to the Trainer"
            )
        self.restore(load_checkpoint(self.checkpoint), plan)

    def _bind(self, plan: Plan) -> str:
        """Validate and fingerprint the plan once per trainer."""
        if self._plan is None or self._plan[0] is not plan:
            self._plan = (plan, check_plan(plan, self.data, self.config.epochs, online=self.selector is not None))
        return self._plan[1]

    def _train_epoch(self, plan: Plan, epoch: int) -> dict:
        rows, weights = epoch_rows(plan, self.data, epoch)
        self.model.train()
        stats = {"loss_sum": torch.zeros((), device=self.device), "trained": 0, "batches": 0, "data_seconds": 0.0}
        self._clock = (
            time.perf_counter(),
            self.ledger.train_seconds,
            self.ledger.selection_seconds,
            self.ledger.eval_seconds,
        )
        size, n = self.config.batch_size, len(rows)
        if self.selector is None:
            batches, done = self.data.train.batches(rows, weights, size, [self.config.seed, epoch]), 0
            while not self._spent():
                tick = time.perf_counter()
                batch = next(batches, None)
                stats["data_seconds"] += time.perf_counter() - tick
                if batch is None:
                    break
                self._set_lr(epoch + done / n)
                self._train_rows(*batch[:2], epoch, stats, batch[2:])
                done += len(batch[0])
                self._maybe_evaluate(epoch + done / n)
        else:
            rows = rows[np.random.default_rng([self.config.seed, epoch]).permutation(n)]
            step = self.config.candidate_batch_size or size
            tick = time.perf_counter()
            self.selector.start_epoch(epoch, self._progress(epoch))
            self.ledger.book_selection(seconds=time.perf_counter() - tick)
            for lo in range(0, n, step):
                if self._spent():
                    break
                self._set_lr(epoch + lo / n)
                tick = self._synchronized_clock()
                chosen = self.selector.select(rows[lo : lo + step], epoch, self._score, self.ledger)
                self.ledger.book_selection(seconds=time.perf_counter() - tick)
                self._train_chosen(chosen, epoch, stats)
                self._maybe_evaluate(epoch + min(lo + step, n) / n)  # selection alone can cross a checkpoint
            self._train_chosen(self.selector.flush(epoch), epoch, stats)
        if self.world > 1:
            dist.all_reduce(stats["loss_sum"])  # each rank summed the losses of its share
        self._synchronized_clock()
        self.ledger.train_seconds = self._train_seconds_now()
        self._clock = None
        return stats

    def _synchronized_clock(self) -> float:
        """``time.perf_counter()`` once the GPU has finished the work queued so far, so that training kernels
        still running are booked as training, not as the selection or evaluation timed next."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _train_seconds_now(self) -> float:
        """Training seconds so far, the running epoch included (its selection and evaluation time left out)."""
        if self._clock is None:
            return self.ledger.train_seconds
        start, train, selection, evaluation = self._clock
        return (
            train
            + (time.perf_counter() - start)
            - (self.ledger.selection_seconds - selection)
            - (self.ledger.eval_seconds - evaluation)
        )

    def _maybe_evaluate(self, progress: float) -> None:
        """A scheduled evaluation when the run's compute has crossed the next checkpoint."""
        every = self.config.eval_every
        if every and self.ledger.total_flops >= self._next_evaluation():
            self._scheduled_evaluation(progress)

    def _next_evaluation(self) -> float:
        step = self.config.eval_every * self.epoch_flops
        return (math.floor(self.evaluations[-1]["flops"] / step + 1e-9) + 1) * step

    def _scheduled_evaluation(self, progress: float) -> None:
        """Evaluate now; record accuracy against compute (seconds and CPU seconds leave evaluations out)."""
        cpu = time.process_time()
        accuracy, loss = self.evaluate()
        led = self.ledger
        start, eval_cpu = self._cpu
        self._cpu = (start, eval_cpu + time.process_time() - cpu)
        record = {
            "epoch": round(progress, 6),
            "accuracy": accuracy,
            "loss": loss,
            "flops": led.total_flops,
            "seconds": self._train_seconds_now() + led.selection_seconds,
            "cpu_seconds": cpu - start - eval_cpu,
            "backward_samples": led.backward_samples,
            "forward_samples": led.forward_samples,
            "selection_forward_samples": led.selection_forward_samples,
        }
        self.evaluations.append(record)
        for cb in self.callbacks:
            cb.on_evaluate(record)

    def _progress(self, epoch: int) -> float:
        """The share of the run done before ``epoch``: of its epochs, or of its budget's backward samples."""
        if self.budget_samples is None:
            return epoch / self.config.epochs
        return self.ledger.backward_samples / self.budget_samples

    def _train_chosen(self, rows: np.ndarray, epoch: int, stats: dict) -> None:
        """Train on a selector's rows in batches of at most ``batch_size``, with its loss weights; it hears
        the per-example losses of the training forward."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self.data.train)):
            raise CurationError(
                f"the online selector chose rows outside the train split (0..{len(self.data.train) - 1})",
                "return rows of the candidates it was given",
            )
        for lo in range(0, len(rows), self.config.batch_size):
            batch = rows[lo : lo + self.config.batch_size]
            weights = self.selector.loss_weights(batch)
            batch, losses = self._train_rows(
                batch, None if weights is None else np.asarray(weights, np.float32), epoch, stats
            )
            if len(batch):
                self.selector.observe(batch, self._gathered(losses, len(batch)))

    def train_batches(self, batches: Iterable[np.ndarray], lr: Callable[[int, int], float], epoch: int = 0) -> dict:
        """Train on caller-composed batches of train rows, in order, batch i of n at learning rate ``lr(i, n)``;
        booked in the ledger (composing the batches included) and seen by callbacks like any epoch's batches."""
        tick = time.perf_counter()
        batches = [np.asarray(rows, dtype=np.int64) for rows in batches]
        if any(len(rows) and (rows.min() < 0 or rows.max() >= len(self.data.train)) for rows in batches):
            raise CurationError(
                f"a batch has rows outside the train split (0..{len(self.data.train) - 1})",
                "compose batches of train-split rows",
            )
        self.model.train()
        stats = {"loss_sum": torch.zeros((), device=self.device), "trained": 0, "batches": 0, "data_seconds": 0.0}
        for i, rows in enumerate(batches):
            for group in self.optimizer.param_groups:
                group["lr"] = lr(i, len(batches))
            self._train_rows(rows, None, epoch, stats)
        self.ledger.train_seconds += time.perf_counter() - tick
        return stats

    def _train_rows(
        self,
        rows: np.ndarray,
        weights: np.ndarray | None,
        epoch: int,
        stats: dict,
        loaded: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[np.ndarray, torch.Tensor | None]:
        """One step on ``rows`` (their features and labels ``loaded`` already, or read here; cut to what is left
        of a budget, at the budget's learning rate); the rows trained and their per-example losses (detached)."""
        if self.budget_samples is not None:
            rows = rows[: max(0, self.budget_samples - self.ledger.backward_samples)]
            weights = None if weights is None else weights[: len(rows)]
            if len(rows) == 0:
                return rows, None
            self._set_budget_lr(len(rows))
        tick = time.perf_counter()
        x, y = self.data.train.batch(rows) if loaded is None else (loaded[0][: len(rows)], loaded[1][: len(rows)])
        if self.config.augment:
            x = augment(x, self._augment_rng, flip=self.config.augment == "crop-flip")
        w = None if weights is None else torch.from_numpy(weights).to(self.device, non_blocking=True)
        if self.world > 1:  # this rank's share of the global batch
            x, y, w = (
                x[self.rank :: self.world],
                y[self.rank :: self.world],
                None if w is None else w[self.rank :: self.world],
            )
        stats["data_seconds"] += time.perf_counter() - tick
        losses = F.cross_entropy(self._logits(x), y, reduction="none", label_smoothing=self.config.label_smoothing)
        loss = losses * w if w is not None else losses
        # DDP averages the ranks' gradients: the sum of a share x world / global rows is the whole batch's mean
        loss = loss.mean() if self.world == 1 else loss.sum() * (self.world / len(rows))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.ledger.book_forward(len(rows))
        self.ledger.book_backward(len(rows))
        np.add.at(self.counts, rows, 1)  # a row may repeat in a batch (sampling with replacement)
        stats["loss_sum"] += losses.detach().sum()
        stats["trained"] += len(rows)
        kill_point(f"train:epoch-{epoch}:batch-{stats['batches']}" + (f":rank-{self.rank}" if self.world > 1 else ""))
        for cb in self.callbacks:
            cb.on_batch_end(epoch, stats["batches"])
        stats["batches"] += 1
        return rows, losses.detach()

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """The model's float32 logits: ``x`` in the model's memory format, under autocast when AMP is on."""
        x = x.contiguous(memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            return self._forward(x).float()

    @torch.inference_mode()
    def _score(self, rows: np.ndarray) -> np.ndarray:
        """Per-example training losses of train ``rows`` in inference mode (eval mode): a selector's forward pass."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return np.empty(0, dtype=np.float32)
        self.model.eval()
        parts = [torch.empty(0, device=self.device)]
        share = rows[self.rank :: self.world]  # in a process group each rank scores its share
        try:
            size = inference_batch(self.device)
            for lo in range(0, len(share), size):
                x, y = self.data.train.batch(share[lo : lo + size])
                parts.append(
                    F.cross_entropy(self._logits(x), y, reduction="none", label_smoothing=self.config.label_smoothing)
                )
        finally:
            self.model.train()
        self.ledger.book_selection(forwards=len(rows))
        return self._gathered(torch.cat(parts), len(rows)).cpu().numpy()

    def _gathered(self, share: torch.Tensor, n: int) -> torch.Tensor:
        """The ``n`` per-row values of a global batch whose share ``rank::world`` this rank computed: the
        same vector on every rank (``share`` itself in one process)."""
        if self.world == 1:
            return share
        size = -(-n // self.world)  # all_gather needs equal sizes: every share padded to the largest
        padded = torch.zeros(size, dtype=share.dtype, device=share.device)
        padded[: len(share)] = share
        shares = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(shares, padded)
        out = torch.empty(n, dtype=share.dtype, device=share.device)
        for rank, values in enumerate(shares):
            out[rank :: self.world] = values[: len(range(rank, n, self.world))]
        return out

    def _set_budget_lr(self, rows: int) -> None:
        """A budgeted run's learning rate for a step on ``rows`` samples: linear decay that reaches 0 at the
        step spending the budget's last backward sample."""
        left = self.budget_samples - self.ledger.backward_samples - rows
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr * left / self.budget_samples

    def _set_lr(self, progress: float) -> None:
        """Learning rate at ``progress`` epochs into the run (fractional): constant or cosine to 0; a budgeted
        run's is set per step by ``_set_budget_lr``."""
        if self.budget_samples is not None:
            return
        lr = self.config.lr
        if self.config.schedule == "cosine":
            lr *= 0.5 * (1 + math.cos(math.pi * progress / self.config.epochs))
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    @torch.inference_mode()
    def evaluate(self) -> tuple[float, float]:
        """Accuracy and mean cross-entropy on the test split (booked as evaluation, not training); NaN on a rank
        other than 0, which goes on training (its next gradient exchange waits for rank 0)."""
        if self.rank:
            return math.nan, math.nan
        tick, test = self._synchronized_clock(), self.data.test
        self.model.eval()
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        loss = torch.zeros((), device=self.device)
        for _, x, y in test.in_order(inference_batch(self.device)):
            out = self._logits(x)
            loss += F.cross_entropy(out, y, reduction="sum")
            correct += (out.argmax(1) == y).sum()
        self.model.train()
        self.ledger.book_eval(len(test), time.perf_counter() - tick)
        return correct.item() / len(test), loss.item() / len(test)

    def _record(self, epoch: int, stats: dict) -> dict:
        """The epoch's record; with ``eval_every`` its accuracy and loss are the latest scheduled evaluation's."""
        if self.config.eval_every:
            if self._done(epoch + 1) and self.evaluations[-1]["flops"] < self.ledger.total_flops:
                self._scheduled_evaluation(float(epoch + 1))  # the run's end is always evaluated
            accuracy, loss = self.evaluations[-1]["accuracy"], self.evaluations[-1]["loss"]
        else:
            accuracy, loss = self.evaluate()
        ledger = self.ledger
        return {
            "epoch": epoch + 1,
            "accuracy": accuracy,
            "loss": loss,
            "train_loss": stats["loss_sum"].item() / max(stats["trained"], 1),
            "trained_samples": stats["trained"],
            "coverage": float(np.count_nonzero(self.counts) / max(len(self.counts), 1)),
            "forward_samples": ledger.forward_samples,
            "backward_samples": ledger.backward_samples,
            "selection_forward_samples": ledger.selection_forward_samples,
            "flops": ledger.total_flops,
            "seconds": ledger.total_seconds,
            "selection_seconds": ledger.selection_seconds,
            "data_seconds": stats["data_seconds"],
        }

    # -- checkpoints ---------------------------------------------------------------------------

    def _identity(self, plan: Plan) -> dict:
        """What a checkpoint must match to be resumed by this trainer."""
        config = {k: v for k, v in self.config.model_dump().items() if k not in RESUME_IGNORES}
        selector = None if self.selector is None else type(self.selector).__qualname__
        return {
            "arch": self.config.arch,
            "feature_shape": list(self.data.feature_shape),
            "version_id": self.data.version_id,
            "config": config,
            "plan": {**plan.describe(), "digest": self._bind(plan)},
            "selector": selector,
            "streamed": self.data.streamed,  # the order of an epoch's batches depends on it
        }

    def state(self, plan: Plan) -> dict:
        """The full training state after ``self.epoch`` epochs (plain values and tensors only)."""
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            **self._identity(plan),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "ledger": self.ledger.to_dict(),
            "history": self.history,
            "evaluations": self.evaluations,
            "counts": torch.from_numpy(self.counts),
            "selector_state": None if self.selector is None else self.selector.state_dict(),
        }

    def restore(self, state: dict, plan: Plan) -> None:
        """Continue from ``state``; a one-line error when it belongs to another architecture, data or setup."""
        where = self.checkpoint or "the checkpoint"
        mine = self._identity(plan)
        if state.get("arch") != mine["arch"]:
            raise CurationError(
                f"checkpoint {where} is from architecture {state.get('arch')!r}, not {mine['arch']!r}",
                "resume with the same --arch, or train again without --resume",
            )
        for key in ("feature_shape", "version_id", "config", "plan", "selector", "streamed"):
            if state.get(key, False if key == "streamed" else None) != mine[key]:
                raise CurationError(
                    f"checkpoint {where} has a different {key} ({state.get(key)} vs {mine[key]})",
                    "resume with the settings of the interrupted run, or train again without --resume",
                )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if state["scaler"]:  # empty when the interrupted run did not use float16 AMP
                self.scaler.load_state_dict(state["scaler"])
            if self.selector is not None:
                self.selector.load_state_dict(state["selector_state"])
            self.ledger = ComputeLedger.from_dict(state["ledger"])
            counts = (state["counts"] if "counts" in state else state["seen"]).numpy()  # "seen": older checkpoints
            if counts.shape != self.counts.shape:
                raise ValueError(f"backward counts of {counts.shape[0]} rows for {self.counts.shape[0]}")
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise CurationError(
                f"checkpoint {where} does not fit this model ({first})", "train again without --resume"
            ) from None
        self.counts = counts.astype(np.int32, copy=True)
        self.history = list(state["history"])
        self.evaluations = list(state.get("evaluations", []))
        self.epoch = int(state["epoch"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
