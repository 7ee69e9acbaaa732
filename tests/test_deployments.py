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
    assert found["retrain"].schedules == []  # started by the new-version event, not by polling
    assert found["retrain"].concurrency_options.collision_strategy == "ENQUEUE"


def _automations(deployment_id):
    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            return [
                a
                for a in await client.read_automations_by_name("retrain on a new version")
                if any(getattr(x, "deployment_id", None) == deployment_id for x in a.actions)
            ]

    return anyio.run(read)


def test_work_pool_deployments_load_this_checkout_and_retrain_on_the_event(prefect_server):
    from prefect.client.orchestration import get_client

    from flows.deployments import HEARTBEAT_S, SILENT_RUNS, SOURCE_ROOT, deploy_all
    from flows.events import VERSION_ADDED

    ids = deploy_all("digits", "test-pool")
    assert deploy_all("digits", "test-pool") == ids  # again: the pool and the deployments are updated, not doubled

    async def read():
        async with get_client() as client:
            return await client.read_work_pool("test-pool"), [await client.read_deployment(i) for i in ids]

    pool, found = anyio.run(read)
    assert pool.type == "process"
    assert {d.work_pool_name for d in found} == {"test-pool"}
    for d in found:  # a process worker runs the flow from this checkout: no image, no remote storage
        assert d.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(SOURCE_ROOT)}}]
        assert (SOURCE_ROOT / d.entrypoint.split(":")[0]).is_file()
    [retrain] = [d for d in found if d.name == "retrain"]
    [automation] = _automations(retrain.id)
    assert automation.trigger.expect == {VERSION_ADDED} and automation.enabled
    assert automation.trigger.match.root == {"prefect.resource.id": "curation.dataset.*"}
    assert automation.actions[0].parameters == {"dataset": "{{ event.payload.dataset }}"}
    for d in found:  # every run beats, so a run whose worker died is found
        assert d.job_variables == {"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)}}
    [silent] = anyio.run(_by_name, SILENT_RUNS)  # registered once, however often the deployments are
    assert silent.trigger.posture == "Proactive" and silent.trigger.within.total_seconds() == 3 * HEARTBEAT_S
    assert silent.trigger.after == {"prefect.flow-run.heartbeat"} and silent.actions[0].state == "CRASHED"


async def _by_name(name):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await client.read_automations_by_name(name)


def test_ingest_emits_the_new_version_event_once(prefect_server, settings, monkeypatch):
    import flows.events
    from flows.ingest import ingest

    sent = []
    real = flows.events.emit_event
    monkeypatch.setattr(flows.events, "emit_event", lambda *a, **kw: sent.append(kw) or real(*a, **kw))
    monkeypatch.setenv("CURATION_DVC", "false")
    first = ingest(source="mnist1d", name="stream", samples=200, seed=1)
    ingest(source="mnist1d", name="stream", samples=200, seed=1)  # the same bytes: no new version, no event
    [event] = sent
    assert event["resource"]["prefect.resource.id"] == "curation.dataset.stream"
    assert event["payload"]["dataset"] == "stream" and event["payload"]["version_id"] == first["id"]


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
    plan = curate(
        version=str(version.id), method="topk-balanced", params={"budget": 24, "score": "loss"}, score_set=scores["id"]
    )
    assert plan["budget"] == 24 and plan["method"] == "topk-balanced"
