"""`curation train` as a user runs it: a run, a kill mid-epoch and --resume, and bad input as one-line errors."""

import json
import os
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from curation.catalog import Catalog, SelectionPlan, TrainingRun
from curation.cli import app
from curation.config import load_settings
from curation.data import sources
from curation.data.store import file_md5
from curation.data.versions import add_version, open_version
from curation.training import Callback, TrainConfig, train_version
from curation.training.records import FAILED, FINISHED, RUNNING
from mlflow import MlflowClient

runner = CliRunner()
SMALL = ["--arch", "cnn1d", "--epochs", "3", "--batch-size", "32"]


@pytest.fixture
def project(home, monkeypatch):
    monkeypatch.setenv("CURATION_DVC", "false")
    settings = load_settings()
    info = add_version(settings, sources.mnist1d(samples=400))
    return settings, info


def cli(*args):
    return runner.invoke(app, ["train", *map(str, args)], catch_exceptions=False)


def user_error(result, expected: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def statuses(settings) -> list[str]:
    with Catalog(settings.catalog).session() as s:
        return [r.status for r in s.query(TrainingRun).order_by(TrainingRun.id)]


def mlflow_statuses(settings) -> list[str]:
    client = MlflowClient(settings.tracking)
    experiment = client.get_experiment_by_name("mnist1d")
    return [] if experiment is None else [r.info.status for r in client.search_runs([experiment.experiment_id])]


def test_train_prints_the_outcome_as_json(project):
    settings, info = project
    result = cli(info.ref, "--arch", "mlp", "--epochs", "2", "--json")
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["config"]["arch"] == "mlp" and outcome["config"]["batch_size"] == 64  # the arch's default
    assert [r["epoch"] for r in outcome["history"]] == [1, 2]
    assert outcome["ledger"]["backward_samples"] == 2 * info.splits["train"]
    assert outcome["registered_model"] == "mnist1d-mlp" and statuses(settings) == [FINISHED]
    human = cli(info.ref, "--arch", "mlp", "--epochs", "1")
    assert human.exit_code == 0 and "finished" in human.stdout and "accuracy" in human.stdout


def test_killed_mid_epoch_then_resume_matches_an_uninterrupted_run(project):
    settings, info = project
    env = {**os.environ, "CURATION_KILL_AT": "train:epoch-1:batch-4"}
    killed = subprocess.run(
        [sys.executable, "-m", "curation", "train", info.ref, *SMALL, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr
    assert statuses(settings) == [RUNNING] and mlflow_statuses(settings) == ["RUNNING"]

    uninterrupted = json.loads(cli(info.ref, *SMALL, "--json").stdout)  # its start ends the dead run
    assert statuses(settings) == [FAILED, FINISHED] and sorted(mlflow_statuses(settings)) == ["FAILED", "FINISHED"]
    resumed = cli(info.ref, *SMALL, "--resume", "--json")
    assert resumed.exit_code == 0, resumed.output
    resumed = json.loads(resumed.stdout)
    assert resumed["run_id"] == 1 and uninterrupted["run_id"] == 2
    assert statuses(settings) == [FINISHED, FINISHED] and mlflow_statuses(settings) == ["FINISHED", "FINISHED"]

    a = torch.load(resumed["checkpoint"], weights_only=True)["model"]
    b = torch.load(uninterrupted["checkpoint"], weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    untimed = lambda h: [{k: v for k, v in r.items() if "seconds" not in k} for r in h]  # noqa: E731
    assert untimed(resumed["history"]) == untimed(uninterrupted["history"])
    client = MlflowClient(settings.tracking)
    assert [m.step for m in client.get_metric_history(resumed["mlflow_run_id"], "accuracy")] == [1, 2, 3]


def write_plan(path, ids, epochs=(-1,)):
    rows = [(e, i) for e in epochs for i in ids]
    pq.write_table(
        pa.table(
            {
                "epoch": pa.array([r[0] for r in rows], pa.int32()),
                "sample_id": pa.array([r[1] for r in rows], pa.int64()),
            }
        ),
        path,
    )
    return path


def test_bad_input_is_one_line_and_nothing_finishes(project, tmp_path):
    settings, info = project
    _, reader = open_version(settings, info.id)
    train_ids = reader.read(["sample_id"], split="train").column("sample_id").to_numpy()[:20].tolist()

    user_error(cli(info.ref, "--arch", "resnet9000"), "unknown architecture 'resnet9000'")
    user_error(cli(info.ref, "--epochs", "0"), "bad training setting 'epochs'")
    user_error(cli("nosuchdata"), "no data set version 'nosuchdata'")
    user_error(cli(info.ref, "--plan", tmp_path / "missing.parquet"), "does not exist")
    user_error(
        cli(info.ref, "--plan", write_plan(tmp_path / "outside.parquet", train_ids + [999_999])),
        "1 sample ids are not in this version (first: 999999)",
    )
    user_error(cli(info.ref, "--plan", write_plan(tmp_path / "empty.parquet", [])), "no sample ids for epoch 0")
    other = add_version(settings, sources.mnist1d(samples=300, seed=7))
    foreign = write_plan(tmp_path / "foreign.parquet", train_ids)
    with Catalog(settings.catalog).session() as s:
        s.add(
            SelectionPlan(
                version_id=other.id,
                method="uniform",
                params={},
                seed=0,
                path=str(foreign),
                content_hash=file_md5(foreign),
                ledger={},
            )
        )
    user_error(cli(info.ref, "--plan", foreign), f"is for data set version {other.id}, not version {info.id}")
    user_error(cli(info.ref, *SMALL, "--resume"), "no interrupted cnn1d run")
    if not torch.cuda.is_available():
        user_error(cli(info.ref, "--device", "cuda"), "no CUDA device is available")
        user_error(cli(info.ref, "--amp", "fp16"), "--amp fp16 needs a CUDA device")
    assert statuses(settings) == [] and mlflow_statuses(settings) == []  # nothing was even started


class Crash(Callback):
    def on_epoch_end(self, record):
        raise RuntimeError("power cut")


def interrupted(settings, info, arch) -> tuple[TrainingRun, str]:
    """A run that crashed after its first checkpoint (FAILED, resumable) and its checkpoint path."""
    with pytest.raises(RuntimeError, match="power cut"):
        train_version(settings, info.ref, TrainConfig(arch=arch, epochs=2, batch_size=32), callbacks=[Crash()])
    with Catalog(settings.catalog).session() as s:
        run = s.query(TrainingRun).order_by(TrainingRun.id.desc()).first()
    return run, settings.home / ".curation" / "runs" / str(run.id) / "checkpoint.pt"


def test_damaged_or_foreign_checkpoints_fail_resume_in_one_line(project):
    settings, info = project
    run, checkpoint = interrupted(settings, info, "cnn1d")
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    user_error(
        cli(info.ref, "--arch", "cnn1d", "--epochs", "2", "--batch-size", "32", "--resume"),
        "is corrupted or not a checkpoint",
    )

    mlp_run, mlp_checkpoint = interrupted(settings, info, "mlp")
    run, checkpoint = interrupted(settings, info, "cnn1d")
    shutil.copyfile(mlp_checkpoint, checkpoint)
    user_error(
        cli(info.ref, "--arch", "cnn1d", "--epochs", "2", "--batch-size", "32", "--resume"),
        "is from architecture 'mlp', not 'cnn1d'",
    )
    assert statuses(settings) == [FAILED, FAILED, FAILED]
    assert FINISHED not in mlflow_statuses(settings) and "RUNNING" not in mlflow_statuses(settings)


def test_a_stored_plan_by_id_trains_its_samples_and_books_its_selection_cost(project):
    from curation.selection.run import select_plan

    settings, info = project
    plan, _ = select_plan(settings, info.id, "soft", {"ratio": 0.25, "seed": 3})
    result = cli(info.ref, "--arch", "mlp", "--epochs", "2", "--plan", plan.id, "--json")
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    per_epoch = -(-info.splits["train"] // 4)  # soft sampling draws ceil(r N) ids per epoch, with replacement
    assert [r["trained_samples"] for r in outcome["history"]] == [per_epoch, per_epoch]
    assert outcome["history"][-1]["coverage"] < 2 * per_epoch / info.splits["train"]
    assert outcome["ledger"]["selection_seconds"] == pytest.approx(plan.selection_seconds)
    with Catalog(settings.catalog).session() as s:
        run = s.get(TrainingRun, outcome["run_id"])
        assert (run.plan_id, run.params["plan"]["method"]) == (plan.id, "soft")


def test_only_runs_whose_process_is_gone_are_ended(project):
    settings, info = project
    from curation.training import records
    from curation.training.run import end_dead_runs, exclusive, run_dir

    catalog = Catalog(settings.catalog)
    live, dead, elsewhere = (records.start_run(catalog, info.id, None, "mlp", {}) for _ in range(3))
    with exclusive(run_dir(settings, dead)):
        pass  # its process took the lock, then died
    with exclusive(run_dir(settings, live)):  # at work
        assert end_dead_runs(settings, catalog) == [dead]
    assert statuses(settings) == [RUNNING, FAILED, RUNNING]  # `elsewhere` never ran in this folder
