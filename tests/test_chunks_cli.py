"""A stream driven through the CLI alone: chunks from files whose ids collide, the drifting simulator, retraining,
`retrain --status`; bad chunks give one line, exit 2 and change nothing."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from curation.catalog import Catalog
from curation.cli import app
from curation.config import load_settings
from curation.data.store import VersionReader

FAST = ["--arch", "mlp", "--epochs", "1", "--passes", "2", "--min-samples", "1", "--device", "cpu"]


@pytest.fixture
def fast(home, monkeypatch):
    monkeypatch.setenv("CURATION_DVC", "false")
    return load_settings()


def cli(*args):
    return CliRunner().invoke(app, list(args))


def csv_chunk(path, seed: int, n: int = 200, width: int = 10, classes: int = 3):
    """A CSV with ids 0..n-1 (every chunk the same ids, as a source that numbers each file from 0)."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, classes, n)
    columns = {"sample_id": np.arange(n), "label": label, "split": np.where(np.arange(n) % 4 == 0, "test", "train")}
    columns |= {f"x{j}": rng.normal(size=n) + (label == j % classes) for j in range(width)}
    pacsv.write_csv(pa.table(columns), path)
    return path


def state(settings):
    """What a bad chunk must not change: the catalog's versions and the data store's files."""
    versions = [(v.id, v.content_hash) for v in Catalog(settings.catalog).versions()]
    return versions, sorted(p.relative_to(settings.home) for p in settings.data_path.rglob("*") if p.is_file())


def test_three_colliding_chunks_added_and_retrained_through_the_cli(fast, tmp_path):
    for c in range(3):
        added = cli("data", "add", str(csv_chunk(tmp_path / f"c{c}.csv", c)), "--name", "s", "--chunk", "--json")
        assert added.exit_code == 0, added.stderr
        info = json.loads(added.stdout)
        trained = cli("retrain", "s", *FAST, "--json")
        assert trained.exit_code == 0, trained.stderr
        assert json.loads(trained.stdout)["new_versions"] == [info["id"]]
    versions = Catalog(fast.catalog).versions("s")
    ids = [VersionReader(fast.home / v.path).sample_ids for v in versions]
    assert [(i.min(), i.max()) for i in ids] == [(0, 199), (200, 399), (400, 599)]  # offset past the largest id
    assert [v.parent_id for v in versions] == [None, versions[0].id, versions[1].id]
    third = pq.read_table(fast.home / versions[2].path)
    assert third.column("original_sample_id").to_pylist() == list(range(200))  # the source's ids stay findable
    assert versions[2].source["renumbered"]["first_id"] == 400 and "renumbered" not in versions[0].source

    status = cli("retrain", "s", "--status", "--json")
    assert status.exit_code == 0, status.stderr
    st = json.loads(status.stdout)
    assert st["consumed"] == [v.id for v in versions] and st["waiting"] == [] and st["runs"] == 3
    assert st["champion"]["model_version_id"] and st["policy"] == "fixed"
    assert st["last_update"] is None or st["last_update"]["sequence"] >= 1
    table = cli("retrain", "s", "--status")
    assert table.exit_code == 0 and "champion" in table.stdout and "waiting" in table.stdout


def test_drifting_simulator_is_a_source_and_waiting_chunks_show(fast):
    for _ in range(2):
        assert cli("data", "add", "mnist1d-drift", "--name", "d", "--samples", "200", "--seed", "3").exit_code == 0
    versions = Catalog(fast.catalog).versions("d")
    assert [v.source["chunk"] for v in versions] == [0, 1] and all(v.source["seed"] == 3 for v in versions)
    again = cli("data", "add", "mnist1d-drift", "--name", "d", "--samples", "200", "--seed", "3", "--step", "1")
    assert again.exit_code == 2 and f"already registered as version {versions[1].id}" in again.stderr
    st = json.loads(cli("retrain", "d", "--status", "--json").stdout)
    assert st["champion"] is None and st["waiting"] == [v.id for v in versions] and st["consumed"] == []


def test_bad_chunks_give_one_line_and_change_nothing(fast, tmp_path):
    first = csv_chunk(tmp_path / "first.csv", 0)
    assert cli("data", "add", str(first), "--name", "s", "--chunk").exit_code == 0
    before = state(fast)
    cases = [
        (csv_chunk(tmp_path / "wide.csv", 1, width=11), "differs from data set 's'"),
        (csv_chunk(tmp_path / "alien.csv", 2, classes=5), "classes [3, 4] that data set 's' does not have"),
        (first, "already registered as version 1"),
        (csv_chunk(tmp_path / "copy.csv", 0), "already registered as version 1"),
    ]  # same rows, another file
    for path, expected in cases:
        result = cli("data", "add", str(path), "--name", "s", "--chunk")
        assert result.exit_code == 2 and result.stderr.count("\n") == 1 and expected in result.stderr, result.stderr
        assert state(fast) == before
    # without --chunk a colliding version is registered as before, and retraining says how to fix it
    assert cli("data", "add", str(csv_chunk(tmp_path / "plain.csv", 5)), "--name", "s").exit_code == 0
    result = cli("retrain", "s", *FAST)
    assert result.exit_code == 2 and "--chunk" in result.stderr and result.stderr.count("\n") == 1
    for bad, expected in (
        (["--step", "2"], "--step 2 needs source mnist1d-drift"),
        (["--chunk", "--parent", "1"], "--parent with --chunk"),
    ):
        result = cli("data", "add", str(first), "--name", "s", *bad)
        assert result.exit_code == 2 and expected in result.stderr
