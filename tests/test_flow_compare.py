"""The compare flow on Prefect's real temporary server: nested MLflow runs, artifacts, cached selection."""

import json

import pytest

from curation.catalog import Catalog, SelectionPlan, TrainingRun
from curation.errors import CurationError

METHODS = ["soft:ratio=0.5", "uniform:budget=0.5"]


def _filter(what: str, body: dict) -> list[dict]:
    """POST /<what>/filter with explicit limit and sort (the typed client sends nulls the server rejects)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.request("POST", f"/{what}/filter", json={**body, "limit": 50, "offset": 0}).json()


def _task_runs(flow_run_id) -> dict[str, list[str]]:
    """Task name -> state names of one flow run's task runs."""
    found: dict[str, list[str]] = {}
    runs = _filter("task_runs", {"flow_runs": {"id": {"any_": [str(flow_run_id)]}}, "sort": "EXPECTED_START_TIME_ASC"})
    for run in runs:
        found.setdefault(run["name"].rsplit("-", 1)[0], []).append(run["state"]["name"])  # names are <task>-<suffix>
    return found


def _artifact(key: str) -> dict:
    return _filter("artifacts", {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC"})[0]


def test_compare_flow_nests_runs_publishes_and_caches_selection(prefect_server, home, monkeypatch):
    import mlflow
    from curation.config import load_settings
    from curation.data import sources
    from curation.data.versions import add_version
    from flows.compare import compare

    monkeypatch.setenv("CURATION_DVC", "false")
    settings = load_settings()
    info = add_version(settings, sources.mnist1d(samples=300))

    first = compare(version=info.ref, methods=METHODS, arch="mlp", epochs=1, return_state=True)
    rows = first.result()
    assert [r["method"] for r in rows] == ["full", "soft", "uniform"] and [r["epochs"] for r in rows] == [1, 2, 2]
    second = compare(version=info.ref, methods=METHODS, arch="mlp", epochs=1, return_state=True)
    again = second.result()

    # selection is pure: the second comparison reuses both plans from Prefect's cache and only trains
    states = _task_runs(second.state_details.flow_run_id)
    assert states["select-plan-cached"] == ["Cached", "Cached"]
    assert sorted(_task_runs(first.state_details.flow_run_id)["select-plan-cached"]) == ["Completed", "Completed"]
    assert len(states["train-compared"]) == 3
    with Catalog(settings.catalog).session() as s:
        assert s.query(SelectionPlan).count() == 2
        assert s.query(TrainingRun).count() == 6
    assert [r["run_id"] for r in again] != [r["run_id"] for r in rows]

    # one MLflow parent per comparison, the three training runs nested under it, the report as its artifacts
    client = mlflow.MlflowClient(settings.tracking)
    experiment = client.get_experiment_by_name(info.dataset).experiment_id
    parents = client.search_runs([experiment], "tags.`curation.kind` = 'compare'", order_by=["attributes.start_time"])
    assert [p.info.status for p in parents] == ["FINISHED", "FINISHED"]
    for parent, result in zip(parents, (rows, again)):
        nested = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        assert sorted(int(n.data.tags["curation.run_id"]) for n in nested) == sorted(r["run_id"] for r in result)
        assert len(client.list_artifacts(parent.info.run_id, "report")) == 4

    # Prefect: the comparison table and the pictures inline
    table = _artifact("comparison")
    from curation.reports import table as cells

    assert json.loads(table["data"]) == cells(again)  # the same cells as the CLI's and the DVC report's tables
    assert [r["method"] for r in json.loads(table["data"])] == ["full data", "soft ratio=0.5", "uniform budget=0.5"]
    assert parents[1].info.run_id in table["description"]
    report = _artifact("comparison-report")
    assert report["data"].count("data:image/png;base64,") == 4


def test_compare_flow_refuses_a_bad_method_before_training(prefect_server, home, monkeypatch):
    from curation.config import load_settings
    from curation.data import sources
    from curation.data.versions import add_version
    from flows.compare import compare

    monkeypatch.setenv("CURATION_DVC", "false")
    settings = load_settings()
    info = add_version(settings, sources.mnist1d(samples=300))
    with pytest.raises(CurationError, match="unknown selection method"):
        compare(version=info.ref, methods=["soft:ratio=0.5", "nosuch:budget=3"], arch="mlp", epochs=1)
    with Catalog(settings.catalog).session() as s:
        assert s.query(TrainingRun).count() == 0 and s.query(SelectionPlan).count() == 0
