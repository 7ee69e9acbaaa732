"""The end-to-end flow on Prefect's real temporary server: the four stages in one flow run, each recorded."""

from curation.catalog import Catalog, TrainingRun
from curation.config import load_settings


def test_end_to_end_flow_runs_every_stage_in_one_flow_run(prefect_server, home, monkeypatch):
    from prefect.client.orchestration import get_client

    from flows.end_to_end import end_to_end

    monkeypatch.setenv("CURATION_DVC", "false")
    state = end_to_end(
        samples=400,
        data_seed=3,
        score_epochs=1,
        method="topk-balanced",
        params={"budget": 0.5, "score": "loss"},
        arch="mlp",
        epochs=2,
        return_state=True,
    )
    out = state.result()
    version, scores, plan, outcome = out["version"], out["score_set"], out["plan"], out["outcome"]
    assert scores["version_id"] == plan["version_id"] == version["id"]
    with Catalog(load_settings().catalog).session() as s:
        [run] = s.query(TrainingRun).all()
        assert (run.id, run.status, run.plan_id, run.version_id) == (
            outcome["run_id"],
            "FINISHED",
            plan["id"],
            version["id"],
        )
    assert [r["epoch"] for r in outcome["history"]] == [1, 2]

    with get_client(sync_client=True) as client:
        flow_run_id = str(state.state_details.flow_run_id)
        found = client.request(
            "POST",
            "/artifacts/filter",
            json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 50, "offset": 0},
        ).json()
    # every stage's artifact belongs to this one flow run (a subflow's would carry its own run id)
    assert sorted(a["key"] for a in found) == ["ingested-version", "score-set", "selection-plan", "training-history"]
