"""Budgeted training (docs/papers.md section 6): a run stops at its budget's backward samples, its learning
rate decaying linearly to 0 at exactly that step; compare adds full-shortened beside the methods."""

import json
import math

import numpy as np
import pytest
import torch
from crash import CrashAt
from typer.testing import CliRunner

from curation.cli import app
from curation.config import load_settings
from curation.data import sources
from curation.data.versions import add_version, open_version
from curation.selection.infobatch import InfoBatch
from curation.selection.plans import FullPlan
from curation.selection.sampling import SampledPlan
from curation.training import Callback, TrainConfig, Trainer, TrainingData
from models import ModelSpec, build


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> TrainingData:
    settings = load_settings(home=tmp_path_factory.mktemp("budget"), dvc=False)
    info = add_version(settings, sources.mnist1d(samples=600))
    _, reader = open_version(settings, info.id)
    return TrainingData.load(reader, info.id, info.feature_shape, torch.device("cpu"))


def trainer(data, callbacks=(), selector=None, checkpoint=None, **options) -> Trainer:
    config = TrainConfig(arch="mlp", **{"epochs": 4, "batch_size": 32, "lr": 0.01, **options})
    torch.manual_seed(0)
    return Trainer(
        build("mlp", ModelSpec(40, data.feature_shape, 10)),
        data,
        config,
        callbacks=callbacks,
        selector=selector,
        checkpoint=checkpoint,
    )


class Steps(Callback):
    """The learning rate and backward samples of every step."""

    def __init__(self):
        self.lr, self.done = [], []

    def on_batch_end(self, epoch, batch):
        self.lr.append(self.trainer.optimizer.param_groups[0]["lr"])
        self.done.append(self.trainer.ledger.backward_samples)


def test_budget_schedule_ends_at_zero_exactly_when_the_budget_is_spent(data):
    n = len(data.train)  # 480
    steps = Steps()
    run = trainer(data, [steps], budget=0.3)
    result = run.fit(FullPlan(data.version_id, data.train.sample_ids))
    budget = math.ceil(0.3 * n * 4)  # 576 backward samples: 1.2 epochs of full data
    assert run.budget_samples == budget == result.ledger.backward_samples
    assert len(result.history) == 2 and result.history[-1]["trained_samples"] == budget - n
    assert steps.lr[-1] == 0.0 and steps.done[-1] == budget
    expected = [0.01 * (budget - done) / budget for done in steps.done]  # linear in the samples spent
    assert steps.lr == pytest.approx(expected)
    assert all(a > b for a, b in zip(steps.lr, steps.lr[1:]))


def test_a_plan_at_ratio_r_with_budget_r_trains_its_epochs_with_the_fitted_schedule(data):
    n = len(data.train)
    soft = SampledPlan(data.version_id, data.train.sample_ids, "soft", 0.3, seed=1)  # 144 draws an epoch
    steps = Steps()
    result = trainer(data, [steps], budget=0.3).fit(soft)
    assert result.ledger.backward_samples == math.ceil(0.3 * n * 4) == 4 * 144
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4] and steps.lr[-1] == 0.0


def test_full_runs_keep_their_cosine_schedule(data):
    steps = Steps()
    result = trainer(data, [steps]).fit(FullPlan(data.version_id, data.train.sample_ids))
    per_epoch = math.ceil(len(data.train) / 32)
    progress = [e + b * 32 / len(data.train) for e in range(4) for b in range(per_epoch)]
    assert steps.lr == pytest.approx([0.01 * 0.5 * (1 + math.cos(math.pi * p / 4)) for p in progress])
    assert result.ledger.backward_samples == 4 * len(data.train)


def test_online_selector_under_a_budget_stops_there_and_resumes_bit_for_bit(data, tmp_path):
    full = FullPlan(data.version_id, data.train.sample_ids)
    reference = trainer(data, selector=InfoBatch(seed=2), budget=0.5).fit(full)
    assert reference.ledger.backward_samples == math.ceil(0.5 * len(data.train) * 4)
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(RuntimeError):
        trainer(data, [CrashAt(1, 4)], InfoBatch(seed=2), checkpoint, budget=0.5).fit(full)
    resumed = trainer(data, selector=InfoBatch(seed=2), checkpoint=checkpoint, budget=0.5).fit(full, resume=True)
    ref, got = reference.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_bad_budgets_are_one_line_errors(home):
    settings = load_settings(dvc=False)
    version = add_version(settings, sources.mnist1d(samples=200))
    result = CliRunner().invoke(app, ["train", str(version.id), "--budget", "1.5"])
    assert result.exit_code == 2 and "budget" in result.stderr and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["compare", str(version.id), "-m", "soft:ratio=0.5", "--budget", "0"])
    assert result.exit_code == 2 and "budget" in result.stderr
    result = CliRunner().invoke(app, ["select", str(version.id), "-m", "infobatch"])
    assert result.exit_code == 2 and "online method" in result.stderr


def test_compare_at_a_budget_adds_full_shortened_and_takes_online_methods_by_name(home):
    settings = load_settings(dvc=False)
    version = add_version(settings, sources.mnist1d(samples=400))  # 320 train samples
    result = CliRunner().invoke(
        app,
        [
            "compare",
            str(version.id),
            "-m",
            "soft:ratio=0.5",
            "-m",
            "infobatch:prune=0.7",
            "-m",
            "selective-backprop:beta=2",
            "--epochs",
            "2",
            "--budget",
            "0.5",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["method"], r["budget"]) for r in rows] == [
        ("full", None),
        ("full-shortened", 0.5),
        ("soft", 0.5),
        ("infobatch", 0.5),
        ("selective-backprop", 0.5),
    ]
    assert rows[0]["backward_samples"] == 640
    assert all(r["backward_samples"] == 320 for r in rows[1:])  # every budgeted run spends exactly its budget
    assert rows[1]["epochs"] == 1 and rows[2]["epochs"] == 2
    assert rows[3]["params"] == {"prune": 0.7}
    equal = CliRunner().invoke(
        app,
        [
            "compare",
            str(version.id),
            "-m",
            "selective-backprop:beta=2",
            "-m",
            "infobatch",
            "--epochs",
            "2",
            "--baseline",
            str(rows[0]["run_id"]),
            "--json",
        ],
    )
    assert equal.exit_code == 0, equal.output
    sb, ib = json.loads(equal.stdout)
    assert sb["epochs"] == 3 and sb["plan_kind"] == "other"  # 1 warm-up + 2 epochs at 2/3 of a full one's cost
    assert ib["epochs"] == 2 and ib["backward_samples"] < 640  # InfoBatch: the full run's epochs, fewer backwards
    assert np.isclose(sum(j * c for j, c in enumerate(ib["occupancy"])), ib["backward_samples"])


def test_compare_flow_runs_online_methods_and_full_shortened_at_a_budget(prefect_server, home, monkeypatch):
    from flows.compare import compare

    monkeypatch.setenv("CURATION_DVC", "false")
    settings = load_settings()
    info = add_version(settings, sources.mnist1d(samples=300))  # 240 train samples
    rows = compare(
        version=info.ref, methods=["infobatch", "selective-backprop:beta=1"], arch="mlp", epochs=2, budgets=[0.5]
    )
    assert [(r["method"], r["budget"]) for r in rows] == [
        ("full", None),
        ("full-shortened", 0.5),
        ("infobatch", 0.5),
        ("selective-backprop", 0.5),
    ]
    assert [r["backward_samples"] for r in rows] == [480, 240, 240, 240]
    assert rows[3]["params"] == {"beta": 1} and all("target_accuracy" in r for r in rows[1:])
