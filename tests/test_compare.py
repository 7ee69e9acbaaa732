"""`curation compare`: the baseline and each method at equal compute, side by side."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curation.cli import app
from curation.compare import parse_method
from curation.data.sources import mnist1d
from curation.data.versions import add_version
from curation.errors import CurationError


def test_parse_method():
    assert parse_method("soft:ratio=0.3,seed=2") == ("soft", {"ratio": 0.3, "seed": 2})
    assert parse_method("full") == ("full", {})
    with pytest.raises(CurationError, match="not key=value"):
        parse_method("soft:ratio")


def test_compare_trains_baseline_and_methods_at_equal_compute(home):
    from curation.config import load_settings

    settings = load_settings(dvc=False)
    version = add_version(settings, mnist1d(samples=400))
    result = CliRunner().invoke(
        app,
        ["compare", str(version.id), "-m", "soft:ratio=0.5", "-m", "uniform:budget=0.25", "--epochs", "2", "--json"],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["method"] for r in rows] == ["full", "soft", "uniform"]
    assert [r["epochs"] for r in rows] == [2, 4, 8]
    backward = [r["backward_samples"] for r in rows]
    assert backward[0] == 2 * 320 and backward[1] == 4 * 160 and backward[2] == 8 * 80  # equal compute
    assert all("target_accuracy" in r for r in rows[1:])
    for r in rows:  # the report's inputs: one curve point per epoch, an occupancy law over the 320 train samples
        assert [p["epoch"] for p in r["history"]] == list(range(1, r["epochs"] + 1))
        assert sum(r["occupancy"]) == 320 and r["train_samples"] == 320
        assert sum(j * c for j, c in enumerate(r["occupancy"])) == r["backward_samples"]
    assert [r["plan_kind"] for r in rows] == ["full", "soft", "static"]
    assert rows[2]["occupancy"][0] == 240 and rows[2]["occupancy"][8] == 80
    import mlflow

    client = mlflow.MlflowClient(settings.tracking)
    [parent] = client.search_runs(
        [client.get_experiment_by_name("mnist1d").experiment_id], "tags.`curation.kind` = 'compare'"
    )
    assert parent.info.status == "FINISHED"
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(int(c.data.tags["curation.run_id"]) for c in children) == [r["run_id"] for r in rows]
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "report")} == {
        f"report/{name}.png" for name in ("accuracy_vs_compute", "coverage", "occupancy", "speedup")
    }
    saved = client.download_artifacts(parent.info.run_id, "comparison.json", str(home / "dl"))
    assert json.loads(Path(saved).read_text()) == rows
    bad = CliRunner().invoke(app, ["compare", str(version.id), "-m", "nosuch"])
    assert bad.exit_code == 2 and "unknown selection method" in bad.stderr
