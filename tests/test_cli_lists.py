"""`curation scores|plans|runs|models ls` and `show ID`: every id a command asks for can be listed, filtered by
data set (and status, lineage), and shown in full, on SQLite and PostgreSQL catalogs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from curation.catalog import Catalog, ModelVersion, TrainingRun
from curation.cli import app
from curation.data import sources
from curation.data.store import content_md5
from curation.data.stream import add_chunk, drifting_mnist1d
from curation.data.versions import add_version
from curation.scoring.run import score_version
from curation.selection.run import select_plan
from curation.training.config import TrainConfig
from curation.training.run import train_version


def cli(*args: str):
    return CliRunner().invoke(app, [*map(str, args)], env={"COLUMNS": "200"})


def listed(*args: str):
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def made(project, monkeypatch):
    """A project with two data sets: 'digits' (a score set, a plan on it, a run on the plan, a failed run) and
    'stream' (a retraining lineage's model)."""
    monkeypatch.setenv("CURATION_DVC", "false")
    config = TrainConfig(arch="mlp", epochs=1, device="cpu")
    version = add_version(project, sources.load("digits", seed=0))
    scores = score_version(project, version.id, "mlp", epochs=1, device="cpu")
    plan, _ = select_plan(project, version.id, "uniform", {"budget": 0.5}, scores.id)
    run = train_version(project, version.id, config, plan.id)
    with Catalog(project.catalog).session() as s:  # a second run, killed: FAILED
        s.add(TrainingRun(version_id=version.id, architecture="mlp", params={}, status="FAILED"))
    add_chunk(project, "stream", drifting_mnist1d(0, samples=240, seed=2))
    retrained = cli(
        "retrain", "stream", "--arch", "mlp", "--epochs", "1", "--min-samples", "1", "--device", "cpu", "--json"
    )
    assert retrained.exit_code == 0, retrained.output
    return {"version": version, "scores": scores, "plan": plan, "run": run, "retrained": json.loads(retrained.stdout)}


def test_lists_and_shows_every_record_a_command_asks_for(made, project):
    version, scores, plan, run = made["version"], made["scores"], made["plan"], made["run"]
    retrained = made["retrained"]

    [score_set] = listed("scores", "ls")
    assert (score_set["id"], score_set["dataset"], score_set["version_id"]) == (scores.id, "digits", version.id)
    assert score_set["version"] == version.ref and score_set["ledger"]["total_flops"] > 0
    assert listed("scores", "ls", "--dataset", "stream") == []
    shown = listed("scores", "show", scores.id)
    assert shown["content_hash"] == content_md5(project.home / shown["path"]) and shown["plans"] == [plan.id]

    [plan_row] = listed("plans", "ls", "--dataset", "digits")
    assert (plan_row["id"], plan_row["method"], plan_row["budget"], plan_row["score_set_id"]) == (
        plan.id,
        "uniform",
        plan.budget,
        scores.id,
    )
    shown = listed("plans", "show", plan.id)
    assert shown["runs"] == [run.run_id] and shown["content_hash"] == content_md5(project.home / shown["path"])

    runs = listed("runs", "ls")
    assert [(r["dataset"], r["status"]) for r in runs] == [
        ("digits", "FINISHED"),
        ("digits", "FAILED"),
        ("stream", "FINISHED"),
    ]
    assert [r["id"] for r in listed("runs", "ls", "--status", "failed")] == [runs[1]["id"]]
    assert [r["id"] for r in listed("runs", "ls", "--dataset", "stream", "--status", "FINISHED")] == [
        retrained["run_id"]
    ]
    assert runs[2]["lineage"] == "proactive" and runs[0]["lineage"] is None
    shown = listed("runs", "show", run.run_id)
    assert shown["mlflow_run_id"] == run.mlflow_run_id and shown["plan_id"] == plan.id
    assert shown["model_version_ids"] == [run.model_version_id] and len(shown["history"]) == 1
    assert shown["summary"]["best_accuracy"] == run.summary["best_accuracy"]
    assert shown["ledger"]["backward_samples"] == run.ledger["backward_samples"]

    models = listed("models", "ls")
    assert [m["id"] for m in models] == [run.model_version_id, retrained["model_version_id"]]
    [lineage_model] = listed("models", "ls", "--lineage", "proactive")
    assert lineage_model["id"] == retrained["model_version_id"] and lineage_model["promoted"]
    assert listed("models", "ls", "--dataset", "stream", "--lineage", "full") == []
    shown = listed("models", "show", retrained["model_version_id"])
    with Catalog(project.catalog).session() as s:
        row = s.get(ModelVersion, retrained["model_version_id"])
        assert (shown["path"], shown["content_hash"], shown["registry_version"]) == (
            row.path,
            row.content_hash,
            row.registry_version,
        )
    assert shown["content_hash"] == content_md5(project.home / shown["path"])
    assert shown["lineage"] == "proactive" and shown["mlflow_run_id"] == runs[2]["mlflow_run_id"]

    # the tables a person reads: every id, and the detail of one record
    for group, ids in (
        ("scores", [scores.id]),
        ("plans", [plan.id]),
        ("runs", [r["id"] for r in runs]),
        ("models", [m["id"] for m in models]),
    ):
        table = cli(group, "ls")
        assert table.exit_code == 0 and table.stdout.count("│ ") >= len(ids), table.output
        first_cells = [line.split("│")[1].strip() for line in table.stdout.splitlines() if line.startswith("│")]
        assert first_cells == [str(i) for i in ids], table.stdout
    detail = cli("runs", "show", run.run_id)
    assert detail.exit_code == 0 and run.mlflow_run_id in detail.stdout and "epoch" in detail.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["scores", "show", "999"], "no score set 999 in the catalog; list them with `curation scores ls`"),
        (["plans", "show", "999"], "no selection plan 999 in the catalog; list them with `curation plans ls`"),
        (["runs", "show", "999"], "no training run 999 in the catalog; list them with `curation runs ls`"),
        (["models", "show", "999"], "no model version 999 in the catalog; list them with `curation models ls`"),
        (["runs", "show", str(2**70)], f"no training run {2**70} in the catalog"),
        (["plans", "show", "--", "-3"], "no selection plan -3 in the catalog"),
        (["runs", "ls", "--dataset", "nosuch"], "no data set 'nosuch' in the catalog"),
        (["models", "ls", "--dataset", "nosuch", "--json"], "no data set 'nosuch' in the catalog"),
    ],
)
def test_an_unknown_id_or_data_set_is_one_line_naming_the_list(home, args, expected):
    result = cli(*args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert lines == [f"error: {expected}"] or (len(lines) == 1 and expected in lines[0]), result.stderr


def test_empty_lists_say_how_to_make_the_first_record(home):
    for group, command in (
        ("scores", "curation score"),
        ("plans", "curation select"),
        ("runs", "curation train"),
        ("models", "curation train"),
    ):
        assert listed(group, "ls") == []
        assert command in cli(group, "ls").stdout
