"""The train flow on Prefect's real temporary server: one task calling the library, a history artifact."""

import json

import pytest

from curation.catalog import Catalog, TrainingRun
from curation.config import load_settings
from curation.data import sources
from curation.data.versions import add_version
from curation.errors import CurationError


def test_train_flow_trains_records_and_publishes_the_history(prefect_server, home, monkeypatch):
    from prefect.client.orchestration import get_client

    from flows.train import train

    monkeypatch.setenv("CURATION_DVC", "false")
    settings = load_settings()
    info = add_version(settings, sources.mnist1d(samples=300))
    outcome = train(version=info.ref, arch="mlp", epochs=2)
    assert [r["epoch"] for r in outcome["history"]] == [1, 2]
    with Catalog(settings.catalog).session() as s:
        [run] = s.query(TrainingRun).all()
        assert (run.id, run.status, run.mlflow_run_id) == (outcome["run_id"], "FINISHED", outcome["mlflow_run_id"])

    with get_client(sync_client=True) as client:  # the typed read_artifacts sends null filters the server rejects
        found = client.request(
            "POST",
            "/artifacts/filter",
            json={
                "artifacts": {"key": {"any_": ["training-history"]}},
                "limit": 50,
                "offset": 0,
                "sort": "CREATED_DESC",
            },
        )
    # the server is shared by the session's tests: this run's artifact is the one naming its MLflow run
    [artifact] = [a for a in found.json() if outcome["mlflow_run_id"] in (a["description"] or "")]
    assert [row["epoch"] for row in json.loads(artifact["data"])] == [1, 2]

    with pytest.raises(CurationError, match="unknown architecture"):
        train(version=info.ref, arch="resnet9000", epochs=1)
    with Catalog(settings.catalog).session() as s:
        assert s.query(TrainingRun).count() == 1
