"""Everything the tool logs, through a real `mlflow server` (PostgreSQL store, artifacts sent to the server),
read back through MlflowClient: nested runs, data set inputs, the registry and its `champion` alias, pictures."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curation.cli import app
from curation.config import load_settings
from curation.data.stream import add_chunk, drifting_mnist1d
from curation.errors import CurationError
from curation.tracking import Tracker
from mlflow import MlflowClient


def cli(*args):
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def served(home, mlflow_server, monkeypatch):
    monkeypatch.setenv("CURATION_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("CURATION_DVC", "false")
    return load_settings()


@pytest.mark.postgres
def test_comparison_and_retrain_land_in_the_server(served, mlflow_server, tmp_path):
    info = json.loads(cli("data", "add", "mnist1d", "--samples", "300", "--json").stdout)
    rows = json.loads(
        cli("compare", "mnist1d", "-m", "uniform:budget=0.5", "--arch", "mlp", "--epochs", "1", "--json").stdout
    )
    assert [r["method"] for r in rows] == ["full", "uniform"]

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("mnist1d")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # kept by the server, not this process
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    [parent] = [r for name, r in runs.items() if name.startswith("compare-")]
    children = [r for r in runs.values() if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in runs.values())
    for child in children:
        [used] = child.inputs.dataset_inputs
        assert used.dataset.digest == info["content_hash"] and used.dataset.name == "mnist1d"
        assert {a.path for a in client.list_artifacts(child.info.run_id)} >= {"ledger.json"}
    pictures = sorted(a.path for a in client.list_artifacts(parent.info.run_id, "report"))
    assert pictures == [
        "report/accuracy_vs_compute.png",
        "report/coverage.png",
        "report/occupancy.png",
        "report/speedup.png",
    ]
    local = client.download_artifacts(parent.info.run_id, "report/coverage.png", str(tmp_path))
    assert Path(local).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    registered = client.search_model_versions("name = 'mnist1d-mlp'")
    assert len(registered) == 2 and {v.status for v in registered} == {"READY"}

    add_chunk(served, "stream", drifting_mnist1d(0, samples=240, seed=2))
    outcome = json.loads(
        cli(
            "retrain",
            "stream",
            "--arch",
            "mlp",
            "--epochs",
            "1",
            "--passes",
            "1",
            "--min-samples",
            "1",
            "--device",
            "cpu",
            "--json",
        ).stdout
    )
    assert outcome["status"] == "trained" and outcome["promoted"]
    champion = client.get_model_version_by_alias("stream-proactive", "champion")
    run = client.get_run(champion.run_id)
    assert run.info.status == "FINISHED" and run.data.params["lineage"] == "proactive"
    assert run.data.tags["curation.version_id"] == str(outcome["new_versions"][-1])
    assert Tracker(served, "stream").alias("stream-proactive", "champion") == champion.version


def test_a_password_in_the_tracking_uri_stays_out_of_errors(home, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    settings = load_settings(tracking_uri="http://curation:s3cret@127.0.0.1:9")  # nothing listens on port 9
    with pytest.raises(CurationError) as caught, Tracker(settings, "mnist1d").run():
        pass
    assert "s3cret" not in str(caught.value) and "curation:***@127.0.0.1:9" in str(caught.value)
