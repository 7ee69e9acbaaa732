"""The ingest flow on Prefect's real temporary server."""

import pytest


def test_ingest_flow_registers_once(prefect_server, settings):
    from prefect.client.orchestration import get_client

    from curation.catalog import Catalog
    from flows.ingest import ingest

    first = ingest(source="mnist1d", samples=300, seed=1)
    again = ingest(source="mnist1d", samples=300, seed=1)
    assert first["created"] and not again["created"]
    assert first["id"] == again["id"]
    assert len(Catalog(settings.catalog).versions("mnist1d")) == 1

    import anyio
    from prefect.client.schemas.sorting import FlowRunSort

    async def read_runs():
        async with get_client() as client:
            return await client.read_flow_runs(limit=20, sort=FlowRunSort.START_TIME_DESC)

    runs = [r for r in anyio.run(read_runs) if r.flow_id and r.state and r.state.is_completed()]
    assert len(runs) >= 2


def test_ingest_flow_bad_input_fails_without_retry(prefect_server, settings, tmp_path):
    from curation.catalog import Catalog
    from curation.errors import CurationError
    from flows.ingest import ingest

    bad = tmp_path / "bad.csv"
    bad.write_text("a,label\n1.0,0.5\n")
    with pytest.raises(CurationError, match="not integers"):
        ingest(source=str(bad))
    assert Catalog(settings.catalog).versions() == []
