"""The Trainer on a real (small) MNIST-1D version: determinism, resume, plans, online selection, bad input."""

import numpy as np
import pyarrow as pa
import pytest
import torch
from crash import CrashAt

from curation.config import load_settings
from curation.data import sources
from curation.data.versions import add_version, open_version
from curation.errors import CurationError
from curation.metrics.coverage import plan_statistics
from curation.selection.online import OnlineMethod
from curation.selection.plans import FullPlan, StaticPlan, TablePlan
from curation.selection.sampling import SampledPlan
from curation.training import Callback, OnlineSelector, TrainConfig, Trainer, TrainingData
from curation.training.trainer import check_plan
from models import ModelSpec, build

TIME_KEYS = {"seconds", "selection_seconds", "data_seconds", "train_seconds", "eval_seconds", "total_seconds"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> TrainingData:
    settings = load_settings(home=tmp_path_factory.mktemp("trainer"), dvc=False)
    info = add_version(settings, sources.mnist1d(samples=600))
    _, reader = open_version(settings, info.id)
    return TrainingData.load(reader, info.id, info.feature_shape, torch.device("cpu"))


def make(data, arch="cnn1d", init_seed=0, **options) -> Trainer:
    trainer_options = {k: options.pop(k) for k in ("checkpoint", "callbacks", "selector") if k in options}
    config = TrainConfig(arch=arch, **{"epochs": 3, "batch_size": 32, **options})
    torch.manual_seed(init_seed)
    return Trainer(build(arch, ModelSpec(40, data.feature_shape, 10)), data, config, **trainer_options)


def full(data) -> FullPlan:
    return FullPlan(data.version_id, data.train.sample_ids)


def untimed(records):
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in records]


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_same_seed_gives_the_same_run_and_another_seed_does_not(data):
    a, b, c = make(data).fit(full(data)), make(data).fit(full(data)), make(data, seed=1).fit(full(data))
    assert_same_weights(a.model, b.model)
    assert untimed(a.history) == untimed(b.history)
    assert untimed(a.history) != untimed(c.history)
    assert a.history[-1]["accuracy"] > 0.2  # it learns: chance is 0.1
    assert [r["epoch"] for r in a.history] == [1, 2, 3]


def test_crash_mid_epoch_then_resume_equals_the_uninterrupted_run(data, tmp_path):
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    reference = make(data).fit(full(data))
    with pytest.raises(RuntimeError, match="simulated crash"):
        make(data, checkpoint=checkpoint, callbacks=[CrashAt(epoch=2, batch=5)]).fit(full(data))
    saved = torch.load(checkpoint, weights_only=True)  # loadable without pickle's arbitrary code
    assert saved["epoch"] == 2 and len(saved["history"]) == 2
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["checkpoint.pt"]  # no temp file left

    resumed_trainer = make(data, init_seed=123, checkpoint=checkpoint)  # other init: the checkpoint must win
    resumed = resumed_trainer.fit(full(data), resume=True)
    assert_same_weights(reference.model, resumed.model)
    assert untimed(resumed.history) == untimed(reference.history)
    assert untimed([resumed.ledger.to_dict()]) == untimed([reference.ledger.to_dict()])
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 3


def test_plan_subset_with_duplicates_books_exactly_what_was_trained(data):
    ids = np.repeat(data.train.sample_ids[:50], 3)
    result = make(data, epochs=2).fit(StaticPlan(data.version_id, ids))
    f = result.ledger.flops_per_sample
    assert [r["trained_samples"] for r in result.history] == [150, 150]
    assert [r["backward_samples"] for r in result.history] == [150, 300]
    assert result.history[-1]["coverage"] == pytest.approx(50 / len(data.train))
    assert result.ledger.train_flops == 300 * f + 300 * 2 * f == result.history[-1]["flops"]
    assert result.ledger.eval_forward_samples == 2 * len(data.test)  # evaluated every epoch, not counted


def test_plan_weights_scale_each_samples_loss(data):
    ids = data.train.sample_ids[:64]
    trainer = make(data, epochs=1, weight_decay=0.0)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit(StaticPlan(data.version_id, ids, weights=np.zeros(len(ids))))
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())  # zero weight: no update
    moved = make(data, epochs=1, weight_decay=0.0)
    moved.fit(StaticPlan(data.version_id, ids, weights=np.ones(len(ids))))
    assert not all(torch.equal(before[k], v) for k, v in moved.model.state_dict().items())


class TopHalf(OnlineMethod):
    """A test selector: keeps the higher-loss half of each candidate batch, queues until a batch is full."""

    def __init__(self, batch_size):
        self.batch_size = batch_size

    def start(self, n):
        self.queue = np.empty(0, dtype=np.int64)

    def select(self, candidates, epoch, score, ledger):
        losses = score(candidates)
        keep = candidates[np.argsort(-losses, kind="stable")[: len(candidates) // 2]]
        self.queue = np.concatenate([self.queue, keep])
        if len(self.queue) < self.batch_size:
            return np.empty(0, dtype=np.int64)
        ready, self.queue = self.queue[: self.batch_size], self.queue[self.batch_size :]
        return ready

    def flush(self, epoch):
        ready, self.queue = self.queue, np.empty(0, dtype=np.int64)
        return ready

    def state_dict(self):
        return {"queue": torch.from_numpy(self.queue.copy())}

    def load_state_dict(self, state):
        self.queue = state["queue"].numpy().copy()


class BatchSizes(Callback):
    def __init__(self):
        self.trainer, self.sizes, self.last = None, [], 0

    def on_batch_end(self, epoch, batch):
        done = self.trainer.ledger.backward_samples
        self.sizes.append(done - self.last)
        self.last = done


def test_online_selector_queues_full_batches_and_books_its_forwards(data):
    n = len(data.train)  # 480 candidates per epoch in 15 batches of 32; 16 kept from each
    selector, sizes = TopHalf(32), BatchSizes()
    assert isinstance(selector, OnlineSelector)
    trainer = make(data, epochs=2, selector=selector, callbacks=[sizes])
    sizes.trainer = trainer
    result = trainer.fit(full(data))
    ledger, f = result.ledger, result.ledger.flops_per_sample
    assert ledger.selection_forward_samples == 2 * n
    assert ledger.selection_flops == 2 * n * f
    assert ledger.forward_samples == ledger.backward_samples == 2 * (n // 2)
    assert ledger.train_flops == 3 * f * 2 * (n // 2)
    assert ledger.selection_seconds > 0 and ledger.total_seconds > ledger.train_seconds
    assert sizes.sizes == ([32] * 7 + [16]) * 2  # full batches while queuing, the remainder flushed
    assert [r["selection_forward_samples"] for r in result.history] == [n, 2 * n]
    assert 0.5 <= result.history[-1]["coverage"] < 1.0
    # the occupancy: how often each train row was backpropagated, over all n rows
    assert sum(result.occupancy) == n and len(result.occupancy) <= 3
    assert sum(k * c for k, c in enumerate(result.occupancy)) == ledger.backward_samples
    assert result.occupancy[0] / n == pytest.approx(1 - result.history[-1]["coverage"])


def test_plans_that_cannot_be_trained_are_one_line_errors(data):
    vid, ids = data.version_id, data.train.sample_ids
    cases = [
        (StaticPlan(vid, [ids[0], 10_000_000]), "1 sample ids are not in this version"),
        (StaticPlan(vid, [ids[0], data.test.sample_ids[3]]), "in the test split"),
        (StaticPlan(vid, []), "no sample ids for epoch 0"),
        (StaticPlan(vid + 1, ids), f"is for data set version {vid + 1}, not version {vid}"),
        (StaticPlan(vid, ids[:2], weights=[1.0, -1.0]), "negative or non-finite weights"),
        (TablePlan(vid, pa.table({"epoch": [0, 0], "sample_id": ids[:2]})), "no sample ids for epoch 1"),
    ]
    for plan, message in cases:
        with pytest.raises(CurationError, match=message) as info:
            check_plan(plan, data, epochs=2)
        assert "\n" not in str(info.value)
    with pytest.raises(CurationError, match="weighted; an online selector"):
        make(data, selector=TopHalf(32)).fit(StaticPlan(vid, ids, weights=np.ones(len(ids))))


def test_checkpoints_from_elsewhere_are_refused(data, tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    make(data, arch="mlp", epochs=1, checkpoint=checkpoint).fit(full(data))
    with pytest.raises(CurationError, match="from architecture 'mlp', not 'cnn1d'"):
        make(data, checkpoint=checkpoint).fit(full(data), resume=True)
    with pytest.raises(CurationError, match="different config"):
        make(data, arch="mlp", epochs=1, lr=0.5, checkpoint=checkpoint).fit(full(data), resume=True)
    with pytest.raises(CurationError, match="different plan"):
        subset = StaticPlan(data.version_id, data.train.sample_ids[:9])
        make(data, arch="mlp", epochs=1, checkpoint=checkpoint).fit(subset, resume=True)

    good = checkpoint.read_bytes()
    for damaged in (b"not a checkpoint at all", good[: len(good) // 2]):
        checkpoint.write_bytes(damaged)
        with pytest.raises(CurationError, match="corrupted or not a checkpoint") as info:
            make(data, arch="mlp", epochs=1, checkpoint=checkpoint).fit(full(data), resume=True)
        assert "\n" not in str(info.value)
    torch.save({"weights": torch.zeros(3)}, checkpoint)
    with pytest.raises(CurationError, match="not a curation checkpoint"):
        make(data, arch="mlp", epochs=1, checkpoint=checkpoint).fit(full(data), resume=True)


class Evaluations(Callback):
    """Collects the scheduled evaluations through the public hooks (no trainer handed in by the test)."""

    def __init__(self):
        self.records, self.trainers = [], set()

    def on_evaluate(self, record):
        self.records.append(record)
        self.trainers.add(id(self.trainer))


def untimed_evaluations(records):
    return [{k: v for k, v in r.items() if k not in TIME_KEYS | {"cpu_seconds"}} for r in records]


def test_evaluations_follow_compute_so_runs_of_any_epoch_size_share_checkpoints(data):
    n = len(data.train)  # 480 rows: a full epoch is 15 batches of 32; eval every quarter epoch of compute
    runs = {}
    for name, ids, epochs in (("full", data.train.sample_ids, 2), ("half", data.train.sample_ids[::2], 4)):
        seen = Evaluations()
        trainer = make(data, epochs=epochs, eval_every=0.25, callbacks=[seen])
        result = trainer.fit(StaticPlan(data.version_id, ids))
        assert seen.trainers == {id(trainer)} and seen.records == result.evaluations
        runs[name] = result
    step = 0.25 * n * 3 * runs["full"].ledger.flops_per_sample
    batch = 32 * 3 * runs["full"].ledger.flops_per_sample
    for result in runs.values():
        flops = np.array([r["flops"] for r in result.evaluations])
        ticks = np.floor(flops / step + 1e-9)
        assert flops[0] == 0 and flops[-1] == result.ledger.total_flops
        assert list(ticks) == list(range(9))  # the start, then every quarter epoch of compute, 2 epochs in all
        assert (flops - ticks * step < batch).all()  # at the first step after the crossing
        seconds = [r["seconds"] for r in result.evaluations]
        assert seconds == sorted(seconds) and seconds[-1] <= result.ledger.total_seconds + 1e-6
        assert result.ledger.eval_forward_samples == 9 * len(data.test)  # no extra per-epoch evaluations
        for record in result.history:  # epoch records carry the latest scheduled evaluation
            latest = [e for e in result.evaluations if e["flops"] <= record["flops"]][-1]
            assert record["accuracy"] == latest["accuracy"]
    samples = [np.array([r["backward_samples"] for r in runs[k].evaluations]) for k in ("full", "half")]
    assert (abs(samples[0] - samples[1]) < 32).all()  # the same checkpoints, within one batch
    assert runs["full"].evaluations[-1]["accuracy"] > 0.2


def test_scheduled_evaluations_resume_bit_for_bit(data, tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    reference = make(data, eval_every=0.3).fit(full(data))
    with pytest.raises(RuntimeError, match="simulated crash"):
        make(data, eval_every=0.3, checkpoint=checkpoint, callbacks=[CrashAt(epoch=1, batch=9)]).fit(full(data))
    resumed = make(data, eval_every=0.3, checkpoint=checkpoint).fit(full(data), resume=True)
    assert untimed_evaluations(resumed.evaluations) == untimed_evaluations(reference.evaluations)
    assert len(reference.evaluations) == 11  # 0, 0.3, ..., 2.7 full epochs of compute, then the end (3.0)


class Candidates(TopHalf):
    def select(self, candidates, epoch, score, ledger):
        self.offered = [*getattr(self, "offered", []), len(candidates)]
        return super().select(candidates, epoch, score, ledger)


def test_online_selectors_score_candidate_batches_and_train_smaller_batches(data):
    n = len(data.train)  # 480 rows: candidates of 96 (5 per epoch), 48 kept from each, trained in batches of 32
    selector, sizes = Candidates(32), BatchSizes()
    trainer = make(data, epochs=2, candidate_batch_size=96, eval_every=0.2, selector=selector, callbacks=[sizes])
    result = trainer.fit(full(data))
    assert selector.offered == [96] * 10
    assert sizes.sizes == [32, 32, 32, 32, 32, 32, 32, 16] * 2  # 240 kept per epoch, the remainder flushed
    assert result.ledger.selection_forward_samples == 2 * n and result.ledger.backward_samples == n
    # selection forwards count towards the schedule: 2 epochs cost 2 x (n + n/2 x 3) / (3n) = 5/3 full epochs
    step = 0.2 * result.ledger.flops_per_sample * 3 * n
    flops = np.array([r["flops"] for r in result.evaluations])
    ticks = np.floor(flops / step + 1e-9)
    assert sorted(set(ticks)) == list(range(9)) and (np.diff(ticks) <= 1).all()  # 0, 0.2, .., 1.6; the end: 5/3
    assert flops[-1] == result.ledger.total_flops == 5 * n * result.ledger.flops_per_sample


def test_occupancy_counts_every_backward_pass_per_row(data):
    n = len(data.train)
    soft = SampledPlan(data.version_id, data.train.sample_ids, "soft", 0.3, seed=4)  # with replacement
    measured = make(data, arch="mlp", epochs=4).fit(soft).occupancy
    exact = plan_statistics("soft", n, 0.3, 4, seed=4)["occupancy"]
    assert measured[: len(exact)] == exact and not any(measured[len(exact) :])
    subset = StaticPlan(data.version_id, data.train.sample_ids[:100])
    assert make(data, arch="mlp", epochs=3).fit(subset).occupancy == [n - 100, 0, 0, 100]


def test_amp_settings_on_the_cpu(data):
    assert make(data, arch="mlp").amp is None  # unset: full float32 on the CPU
    bf16 = make(data, arch="mlp", epochs=1, amp="bf16")
    assert bf16.amp == torch.bfloat16 and not bf16.scaler.is_enabled()
    seen = []
    bf16.model.net[1].register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    assert bf16.fit(full(data)).history[-1]["accuracy"] > 0.15 and set(seen) == {torch.bfloat16}
    with pytest.raises(CurationError, match="--amp fp16 needs a CUDA device"):
        make(data, arch="mlp", amp="fp16")
    with pytest.raises(CurationError, match="bad training setting 'amp'"):
        TrainConfig.make(amp="fp8")


def test_compile_trains_like_eager_and_checkpoints_plain_weights(data, tmp_path):
    import shutil

    if not (shutil.which("g++") or shutil.which("clang++")):
        pytest.skip("torch.compile on the CPU needs a C++ compiler (g++ or clang++); none is installed here")
    checkpoint = tmp_path / "checkpoint.pt"
    eager = make(data, arch="mlp", epochs=1).fit(full(data))
    compiled = make(data, arch="mlp", epochs=1, compile=True, checkpoint=checkpoint)
    assert compiled._forward is not compiled.model  # the compiled wrapper shares the model's parameters
    result = compiled.fit(full(data))
    saved = torch.load(checkpoint, weights_only=True)["model"]
    assert saved.keys() == eager.model.state_dict().keys()  # no "_orig_mod." prefixes
    for name, value in eager.model.state_dict().items():
        assert torch.allclose(value, result.model.state_dict()[name], atol=1e-4), name
    assert result.history[-1]["accuracy"] == pytest.approx(eager.history[-1]["accuracy"], abs=0.02)
    # compile is not part of a run's identity: an eager trainer resumes a compiled run's checkpoint
    resumed = make(data, arch="mlp", epochs=2, checkpoint=checkpoint)
    with pytest.raises(CurationError, match="different config"):  # epochs differ: the identity still guards
        resumed.fit(full(data), resume=True)
    make(data, arch="mlp", epochs=1, checkpoint=checkpoint).fit(full(data), resume=True)
