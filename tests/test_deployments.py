"""Deployments registered against Prefect's real local server and read back through its client."""

import anyio


def test_deployments_and_schedules_are_registered(prefect_server):
    from prefect.client.orchestration import get_client

    from flows.deployments import NIGHTLY, deployments

    ids = [d.apply() for d in deployments("digits")]

    async def read():
        async with get_client() as client:
            return [await client.read_deployment(i) for i in ids]

    found = {d.name: d for d in anyio.run(read)}
    assert set(found) == {"nightly-curate", "ingest", "end-to-end", "compare", "retrain"}
    nightly = found["nightly-curate"]
    assert [s.schedule.cron for s in nightly.schedules] == [NIGHTLY]
    assert nightly.parameters == {"version": "digits"}
    assert found["ingest"].schedules == [] and found["compare"].schedules == []
    assert found["compare"].parameters == {"version": "digits"}
    assert found["end-to-end"].schedules == [] and found["end-to-end"].parameters == {}


def test_curate_flow_records_a_plan(prefect_server, settings):
    from curation.data.sources import digits
    from curation.data.versions import add_version
    from curation.selection.run import plans
    from flows.curate import curate

    version = add_version(settings, digits())
    plan = curate(version=str(version.id), method="uniform", params={"budget": 0.1, "seed": 1})
    assert plan["budget"] == 144 and [p.id for p in plans(settings)] == [plan["id"]]


def test_score_then_curate_flows(prefect_server, settings):
    from curation.data.sources import mnist1d
    from curation.data.versions import add_version
    from flows.curate import curate
    from flows.score import score

    version = add_version(settings, mnist1d(samples=300))
    scores = score(version=str(version.id), epochs=1)
    plan = curate(version=str(version.id), method="topk-balanced", params={"budget": 24, "score": "loss"},
                  score_set=scores["id"])
    assert plan["budget"] == 24 and plan["method"] == "topk-balanced"
