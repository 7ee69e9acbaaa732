"""The training path on a CUDA GPU: CPU parity, AMP, resume, scoring, Selective-Backprop, sparse training.

Skipped without a GPU. Self-contained on purpose: no conftest fixtures, and nothing that imports
Prefect, MLflow, DVC or SQLAlchemy, so that a GPU machine with only torch, numpy, pyarrow and
pydantic runs it (``benchmarks/gpu_check.py`` does, with ``--noconftest``).
"""

import os

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (before its first use)

import numpy as np
import pyarrow as pa
import pytest
import torch
from crash import CrashAt

from curation.data import synthetic
from curation.scoring.scores import SCORES, score_batches
from curation.selection.plans import FullPlan
from curation.selection.selective_backprop import SelectiveBackprop
from curation.sparse_updates import Replica, SparseTraining, SparseUpdate, Sparsifier
from curation.training.config import TrainConfig
from curation.training.data import TrainingData
from curation.training.trainer import Callback, Trainer
from models import ModelSpec, build

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="needs a CUDA GPU (torch.cuda.is_available() is False here); `make gpu-check` runs these on one",
    ),
]

CPU, GPU = torch.device("cpu"), torch.device("cuda")
ARRAYS = {"cnn1d": lambda: synthetic.sequences(3000, seed=0), "lenet5": lambda: synthetic.images(2000, seed=0)}


def data(arch: str, device: torch.device) -> TrainingData:
    return TrainingData.of_arrays(*ARRAYS[arch](), device)


def trainer(arch: str, device: torch.device, **options) -> Trainer:
    extra = {k: options.pop(k) for k in ("checkpoint", "callbacks", "selector") if k in options}
    d = data(arch, device)
    torch.manual_seed(0)  # the same initial weights on every device
    model = build(arch, ModelSpec(int(np.prod(d.feature_shape)), d.feature_shape, 10))
    return Trainer(model, d, TrainConfig(arch=arch, **{"epochs": 3, "batch_size": 32, **options}), **extra)


def fit(t: Trainer, **kwargs):
    return t.fit(FullPlan(t.data.version_id, t.data.train.sample_ids), **kwargs)


@pytest.mark.parametrize("arch", ["cnn1d", "lenet5"])
def test_a_short_gpu_run_matches_the_cpu_run(arch):
    cpu = fit(trainer(arch, CPU, amp="off")).history
    gpu = trainer(arch, GPU, amp="off")
    assert gpu.data.train.features.is_cuda and next(gpu.model.parameters()).is_cuda
    if arch == "lenet5":  # 2D convolutions train in channels_last on the GPU
        assert gpu.memory_format == torch.channels_last
        assert gpu.model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    history = fit(gpu).history
    assert history[-1]["accuracy"] > 0.25, history  # it learns: chance is 0.1
    assert abs(history[-1]["accuracy"] - cpu[-1]["accuracy"]) <= 0.05, (history, cpu)
    assert [r["trained_samples"] for r in history] == [r["trained_samples"] for r in cpu]


class Dtypes(Callback):
    """The dtype of the first convolution's output in each training batch (what autocast did)."""

    def on_fit_start(self, config, epoch):
        self.seen = set()
        conv = next(m for m in self.trainer.model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d)))
        conv.register_forward_hook(lambda m, i, out: self.seen.add(out.dtype) if m.training else None)


@pytest.mark.parametrize(
    "amp, dtype", [(None, torch.bfloat16), ("bf16", torch.bfloat16), ("fp16", torch.float16), ("off", torch.float32)]
)
def test_amp_on_and_off(amp, dtype):
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip(f"{torch.cuda.get_device_name()} has no bf16")
    dtypes = Dtypes()
    t = trainer("cnn1d", GPU, amp=amp, callbacks=[dtypes])
    history = fit(t).history
    assert dtypes.seen == {dtype}
    assert t.scaler.is_enabled() == (dtype == torch.float16)  # a GradScaler only for float16
    assert all(np.isfinite(r["train_loss"]) for r in history)
    assert history[-1]["accuracy"] > 0.25, history


@pytest.fixture
def deterministic():
    torch.use_deterministic_algorithms(True, warn_only=True)
    benchmark, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, False
    yield
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = benchmark


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_resume_on_the_gpu_equals_the_uninterrupted_run_bit_for_bit(amp, tmp_path, deterministic):
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip(f"{torch.cuda.get_device_name()} has no bf16")
    reference = fit(trainer("cnn1d", GPU, amp=amp))
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(trainer("cnn1d", GPU, amp=amp, checkpoint=checkpoint, callbacks=[CrashAt(epoch=2, batch=5)]))
    resumed = fit(trainer("cnn1d", GPU, amp=amp, checkpoint=checkpoint), resume=True)
    a, b = reference.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["accuracy"] for r in reference.history] == [r["accuracy"] for r in resumed.history]


def test_scoring_on_the_gpu_matches_the_cpu():
    t = trainer("cnn1d", CPU, epochs=1)
    fit(t)
    cpu = pa.Table.from_batches(list(score_batches(t.model, t.data.train)))
    gpu_data = data("cnn1d", GPU)
    gpu = pa.Table.from_batches(list(score_batches(t.model.to(GPU), gpu_data.train)))
    assert cpu.column_names == gpu.column_names and gpu.num_rows == len(gpu_data.train)
    for name in (*SCORES, "embedding", "gradient"):
        a, b = (
            np.asarray(
                table.column(name).combine_chunks().flatten()
                if name in ("embedding", "gradient")
                else table.column(name)
            )
            for table in (cpu, gpu)
        )
        assert np.allclose(a, b, rtol=1e-2, atol=1e-3), name  # TF32 convolutions on the GPU


def test_selective_backprop_on_the_gpu():
    sb = {"beta": 2.0, "warmup_epochs": 1, "seed": 0}
    cpu = trainer("cnn1d", CPU, amp="off", selector=SelectiveBackprop(**sb))
    gpu = trainer("cnn1d", GPU, selector=SelectiveBackprop(**sb))
    result = fit(gpu)
    ledger = result.ledger
    assert ledger.selection_forward_samples > 0 and ledger.backward_samples < 3 * len(gpu.data.train)
    assert result.history[-1]["accuracy"] > 0.25, result.history
    cpu_losses = cpu._score(np.arange(2000))  # the selection forward: one large inference batch on the GPU
    gpu.model.load_state_dict(cpu.model.state_dict())
    gpu_losses = gpu._score(np.arange(2000))
    assert gpu_losses.dtype == np.float32 and np.allclose(cpu_losses, gpu_losses, rtol=5e-2, atol=5e-2)


@pytest.mark.parametrize("arch", ["cnn1d", "lenet5"])
def test_sparse_training_replica_equals_the_gpu_mirror_bit_for_bit(arch):
    t = trainer(arch, GPU, epochs=2, batch_size=64)
    replica = Replica(t.model.state_dict(), "m")
    sender = Sparsifier(0.01, "m", carry=True).start(t.model.state_dict())
    shipped = []

    def ship(update: SparseUpdate):
        payload = update.to_bytes()
        shipped.append(len(payload))
        replica.apply(SparseUpdate.from_bytes(payload))

    callback = t.add_callback(SparseTraining(sender, ship, "m.1"))
    fit(t)
    assert shipped and all(v.is_cuda for v in [*sender.mirror.values(), *sender.residual.values()])
    for name, value in t.model.state_dict().items():
        assert torch.equal(replica.state[name], sender.mirror[name].cpu()), name
        assert torch.equal(replica.state[name], value.cpu()), name
    assert callback.pending == 0 and replica.sequence == len(shipped)
