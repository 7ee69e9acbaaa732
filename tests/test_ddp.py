"""`curation train --nproc 2`: two gloo ranks on the CPU train like one process; a rank killed mid-epoch fails the
run in one line, leaves the last epoch's checkpoint whole, and --resume completes it; bad input is one line."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from curation.catalog import Catalog, TrainingRun
from curation.cli import app
from curation.config import load_settings
from curation.data import sources
from curation.data.versions import add_version
from curation.selection.infobatch import InfoBatch
from curation.selection.selective_backprop import SelectiveBackprop
from curation.training import TrainConfig, train_version
from curation.training.checkpoint import load_checkpoint
from curation.training.records import FAILED, FINISHED
from mlflow import MlflowClient

runner = CliRunner()
SMALL = ["--arch", "cnn1d", "--epochs", "3", "--batch-size", "32", "--device", "cpu"]


@pytest.fixture
def project(home, monkeypatch):
    monkeypatch.setenv("CURATION_DVC", "false")
    settings = load_settings()
    return settings, add_version(settings, sources.mnist1d(samples=400))


def cli(*args):
    return runner.invoke(app, ["train", *map(str, args)], catch_exceptions=False)


def trained(*args) -> dict:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def statuses(settings) -> list[str]:
    with Catalog(settings.catalog).session() as s:
        return [r.status for r in s.query(TrainingRun).order_by(TrainingRun.id)]


def one_line_error(result, expected: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.strip().splitlines() if "INFO mlflow" not in line]  # its first start
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], result.stderr


def test_two_ranks_train_like_one_process(project):
    settings, info = project
    one = trained(info.ref, *SMALL)
    two = trained(info.ref, *SMALL, "--nproc", "2")
    rows = info.splits["train"]
    assert statuses(settings) == [FINISHED, FINISHED]
    assert two["ledger"]["backward_samples"] == two["ledger"]["forward_samples"] == 3 * rows  # summed over ranks
    assert two["ledger"]["train_flops"] == one["ledger"]["train_flops"]
    assert two["occupancy"] == one["occupancy"] == [0, 0, 0, rows]
    assert [r["epoch"] for r in two["history"]] == [1, 2, 3]
    for a, b in zip(one["history"], two["history"], strict=True):  # the same global batches: the same gradients
        assert abs(a["accuracy"] - b["accuracy"]) <= 0.02 and abs(a["train_loss"] - b["train_loss"]) < 1e-3
    a = torch.load(one["checkpoint"], weights_only=True)["model"]
    b = torch.load(two["checkpoint"], weights_only=True)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)

    client = MlflowClient(settings.tracking)
    run = client.get_run(two["mlflow_run_id"])  # one MLflow run for the two ranks, every epoch logged once
    assert run.info.status == "FINISHED" and run.data.params["nproc"] == "2"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "accuracy")] == [1, 2, 3]
    assert len(client.search_runs([run.info.experiment_id])) == 2


def test_a_rank_killed_mid_epoch_fails_the_run_and_resume_completes_it(project, monkeypatch):
    settings, info = project
    monkeypatch.setenv("CURATION_KILL_AT", "train:epoch-1:batch-4:rank-1")  # rank 1 only, in epoch 2
    killed = cli(info.ref, *SMALL, "--nproc", "2", "--json")  # no progress lines on stderr
    one_line_error(killed, "training rank 1 of 2 failed")
    assert "SIGKILL" in killed.stderr and statuses(settings) == [FAILED]
    folder = settings.home / ".curation" / "runs" / "1"
    assert load_checkpoint(folder / "checkpoint.pt")["epoch"] == 1  # the last completed epoch, whole
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.pt", "lock"]  # nothing half-written
    monkeypatch.delenv("CURATION_KILL_AT")

    resumed = trained(info.ref, *SMALL, "--nproc", "2", "--resume")
    assert resumed["run_id"] == 1 and statuses(settings) == [FINISHED]
    assert [r["epoch"] for r in resumed["history"]] == [1, 2, 3]
    assert resumed["ledger"]["backward_samples"] == 3 * info.splits["train"]  # the killed epoch is not booked
    assert resumed["occupancy"] == [0, 0, 0, info.splits["train"]]
    client = MlflowClient(settings.tracking)
    assert client.get_run(resumed["mlflow_run_id"]).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(resumed["mlflow_run_id"], "accuracy")] == [1, 2, 3]
    assert np.isfinite([r["accuracy"] for r in resumed["history"]]).all()


@pytest.mark.parametrize("selector", [SelectiveBackprop(warmup_epochs=0, batch_size=32), InfoBatch(batch_size=32)])
def test_online_selectors_decide_the_same_on_every_rank_and_the_ledger_adds_up(project, selector):
    """Each rank scores its share of the candidates (Selective-Backprop) or trains on its share (InfoBatch); the
    losses gathered, every rank's selector decides the rows one process would (up to other batch shapes' float
    noise), and the ledger counts the global batches."""
    settings, info = project
    config = TrainConfig(arch="cnn1d", epochs=3, batch_size=32, device="cpu", candidate_batch_size=128)
    one = train_version(settings, info.ref, config, selector=copy.deepcopy(selector))
    two = train_version(settings, info.ref, config.model_copy(update={"nproc": 2}), selector=copy.deepcopy(selector))
    rows = info.splits["train"]
    led1, led2 = one.ledger, two.ledger
    assert led2["selection_forward_samples"] == led1["selection_forward_samples"]  # each candidate scored once
    assert 0 < led2["backward_samples"] < 3 * rows  # it pruned
    assert abs(led2["backward_samples"] - led1["backward_samples"]) <= 0.03 * 3 * rows
    for a, b in zip(one.history, two.history, strict=True):
        assert abs(a["accuracy"] - b["accuracy"]) <= 0.05
    state = load_checkpoint(Path(two.checkpoint))
    assert state["selector"] == type(selector).__qualname__ and state["selector_state"]  # rank 0 kept its state
    assert statuses(settings) == [FINISHED, FINISHED]


def test_bad_input_is_one_line_and_nothing_starts(project, monkeypatch):
    settings, info = project
    result = cli(info.ref, *SMALL, "--nproc", "0")
    assert result.exit_code == 2 and "--nproc" in result.output and "Traceback" not in result.output
    monkeypatch.setenv("WORLD_SIZE", "2")  # started by torchrun: every process would start a run
    one_line_error(cli(info.ref, *SMALL, "--nproc", "2"), "it starts its own training processes")
    assert statuses(settings) == []
