"""`curation select`: plans stored in Parquet + catalog, generated plans re-derived, hand edits caught."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from curation.cli import app
from curation.data.sources import mnist1d
from curation.data.versions import add_version
from curation.errors import CurationError
from curation.selection.run import load_plan, plans, select_plan

runner = CliRunner()


@pytest.fixture
def version(project):
    return add_version(project, mnist1d(samples=500))


def test_subset_plan_round_trip(project, version):
    info, selector = select_plan(project, version.id, "uniform", {"budget": 0.2, "seed": 3})
    assert info.budget == 80 and info.ratio == pytest.approx(0.2) and info.path.startswith("data/plans/")
    plan = load_plan(project, info.id)
    assert np.array_equal(np.sort(plan.ids(0)), np.sort(selector.selected_))
    assert np.array_equal(plan.ids(5), plan.ids(0))  # the same subset every epoch
    assert [p.id for p in plans(project, version.id)] == [info.id]


def test_generated_plan_is_stored_as_its_generator(project, version):
    info, selector = select_plan(project, f"mnist1d@{version.content_hash[:6]}", "soft", {"ratio": 0.25, "seed": 9})
    assert info.path is None and info.params == {"ratio": 0.25, "seed": 9}
    plan = load_plan(project, info.id)
    for epoch in (0, 1, 7):
        assert np.array_equal(plan.ids(epoch), selector.plan_.ids(epoch))
    assert len(plan.ids(0)) == 100  # ceil(0.25 * 400 train samples)


def test_hand_edited_plan_is_rejected(project, version):
    info, _ = select_plan(project, version.id, "uniform", {"budget": 10})
    path = project.home / info.path
    table = pq.read_table(path)
    pq.write_table(table.set_column(1, "sample_id", pa.array(np.arange(10, dtype=np.int64))), path)
    with pytest.raises(CurationError, match="changed by hand"):
        load_plan(project, info.id)


def test_cli_select_and_errors(project, version):
    result = runner.invoke(app, ["select", str(version.id), "-m", "rs2", "--ratio", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["method"] == "rs2"
    for args, message in [
        (["-m", "uniform", "--budget", "x"], "not a number"),
        (["-m", "uniform", "--budget", "401"], "larger than the 400"),
        (["-m", "soft", "--param", "oops"], "not key=value"),
        (["-m", "bogus"], "unknown selection method"),
    ]:
        bad = runner.invoke(app, ["select", str(version.id), *args])
        assert bad.exit_code == 2 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert len(plans(project)) == 1  # nothing recorded by the failures
    listing = runner.invoke(app, ["methods", "--json"])
    assert {"soft", "rs2", "uniform", "full"} <= set(json.loads(listing.stdout))


@pytest.mark.parametrize("point", ["select:after-write", "select:before-commit"])
def test_kill_during_select_records_nothing_and_rerun_works(point, settings):
    import os
    import subprocess
    import sys

    version = add_version(settings, mnist1d(samples=200))
    run = lambda env: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "curation", "select", str(version.id), "-m", "uniform", "--budget", "20", "--json"],
        cwd=settings.home,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert run({"CURATION_KILL_AT": point}).returncode == -9
    assert plans(settings) == []
    done = run({})
    assert done.returncode == 0, done.stderr
    plan = load_plan(settings, json.loads(done.stdout)["id"])
    assert len(plan.ids(0)) == 20
