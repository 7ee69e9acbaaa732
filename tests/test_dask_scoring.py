"""Scoring on Dask (`curation score --engine dask`) on a real 2-worker LocalCluster: the same score set as the local
path byte for byte, the CLI, and a task killed midway leaving nothing behind."""

import json
import os

import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from curation.catalog import Catalog, ScoreSet
from curation.cli import app
from curation.config import load_settings
from curation.data import sources, store
from curation.data.versions import add_version
from curation.scoring import run as scoring_run
from curation.scoring.run import score_version

distributed = pytest.importorskip("distributed")

runner = CliRunner()
KILL = "score:batch-0"  # every task's first batch


@pytest.fixture(scope="module")
def client():
    """Two workers; a task on a worker that dies fails at once (no reruns), so a kill point fails the run."""
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"allowed_failures": 0},
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def version(tmp_path_factory):
    """600 MNIST-1D samples in row groups of 64 rows: the train split spans several shards."""
    settings = load_settings(home=tmp_path_factory.mktemp("dask-scoring"), dvc=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store, "ROW_GROUP_SIZE", 64)
        info = add_version(settings, sources.mnist1d(samples=600))
    return settings, info


@pytest.fixture(autouse=True)
def small_parts(monkeypatch):
    """Parts of about 100 rows: the 480 train rows make several parts, so several tasks."""
    monkeypatch.setattr(scoring_run, "PART_ROWS", 100)


@pytest.fixture(scope="module")
def local(version):
    settings, info = version
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scoring_run, "PART_ROWS", 100)
        return score_version(settings, info.id, epochs=2, seed=1)


def score_sets(settings) -> int:
    with Catalog(settings.catalog).session() as s:
        return s.scalar(select(func.count()).select_from(ScoreSet))


def test_dask_scores_equal_local_scores_bit_for_bit(version, local, client):
    settings, info = version
    sharded = score_version(settings, info.id, epochs=2, seed=1, engine="dask", client=client)
    a, b = (pq.read_table(settings.home / i.path) for i in (local, sharded))
    assert a.num_rows == info.splits["train"] and a.column_names == b.column_names
    assert all(a.column(name).equals(b.column(name)) for name in a.column_names)
    assert sharded.content_hash == local.content_hash  # the same parts, byte for byte
    assert len(list((settings.home / local.path).glob("part-*.parquet"))) == 5  # 480 rows in parts of about 100
    assert local.params["engine"] == "local" and sharded.params["engine"] == "dask"
    assert sharded.columns == local.columns and "forgetting" in sharded.columns


def test_cli_engine_dask_on_a_scheduler(version, local, client, monkeypatch):
    settings, info = version
    monkeypatch.setenv("CURATION_HOME", str(settings.home))
    monkeypatch.setenv("CURATION_DVC", "false")
    common = ["score", str(info.id), "--epochs", "2", "--seed", "1"]
    result = runner.invoke(app, [*common, "--engine", "dask", "--scheduler", client.scheduler.address, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["content_hash"] == local.content_hash
    bad = runner.invoke(app, [*common, "--scheduler", client.scheduler.address])
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1 and "--scheduler needs --engine dask" in bad.stderr


def test_a_task_killed_midway_leaves_no_score_set_and_no_parts(version, local, client):
    settings, info = version
    before, files = score_sets(settings), sorted((settings.data_path / "scores").iterdir())
    client.run(lambda: os.environ.__setitem__("CURATION_KILL_AT", KILL))  # a lambda travels by value
    try:
        with pytest.raises(distributed.KilledWorker):
            score_version(settings, info.id, epochs=2, seed=1, engine="dask", client=client)
    finally:
        client.wait_for_workers(2, timeout=120)
        client.run(lambda: os.environ.pop("CURATION_KILL_AT", None))
    assert score_sets(settings) == before
    assert sorted((settings.data_path / "scores").iterdir()) == files  # no parts, no half-written score set
    again = score_version(settings, info.id, epochs=2, seed=1, engine="dask", client=client)
    assert again.content_hash == local.content_hash and score_sets(settings) == before + 1
