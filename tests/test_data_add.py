"""`curation data add/ls/show` as a user runs them: versions, DVC, idempotency, crashes; bad input: test_bad_inputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curation.catalog import Catalog
from curation.cli import app
from curation.data.dvc_repo import dvc_hash
from curation.data.store import content_md5

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def written_files(home: Path) -> list[str]:
    """Every file under data/ (staging included): nothing may appear after a rejected add."""
    data = home / "data"
    return sorted(str(p.relative_to(home)) for p in data.rglob("*") if p.is_file()) if data.exists() else []


def test_add_mnist1d_creates_one_dvc_tracked_version(project):
    result = cli("data", "add", "mnist1d", "--samples", "400", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    path = project.home / info["path"]
    assert info["created"] and info["rows"] == 400 and info["splits"] == {"train": 320, "test": 80}
    assert info["content_hash"] == content_md5(path) == dvc_hash(path)  # the catalog records DVC's hash
    assert info["feature_shape"] == [1, 40] and info["classes"] == list(range(10))

    again = json.loads(cli("data", "add", "mnist1d", "--samples", "400", "--json").stdout)
    assert not again["created"] and again["id"] == info["id"]
    assert len(Catalog(project.catalog).versions()) == 1
    shard = info["path"] + "/part-00000.parquet"  # 400 rows: one shard
    assert written_files(project.home) == sorted([shard, info["path"] + ".dvc", "data/mnist1d/.gitignore"])

    listing = json.loads(cli("data", "ls", "--json").stdout)
    assert [v["id"] for v in listing] == [info["id"]]
    shown = json.loads(cli("data", "show", f"mnist1d@{info['content_hash'][:6]}", "--json").stdout)
    assert shown["content_hash"] == info["content_hash"]


def test_published_mnist1d_split_and_new_version_with_parent(settings):
    published = json.loads(cli("data", "add", "mnist1d", "--json").stdout)
    assert published["splits"] == {"train": 4000, "test": 1000}
    assert published["source"]["seed"] == 42
    bigger = json.loads(
        cli("data", "add", "mnist1d", "--samples", "600", "--parent", str(published["id"]), "--json").stdout
    )
    assert bigger["created"] and bigger["parent_id"] == published["id"]
    human = cli("data", "ls")
    assert "mnist1d@" in human.stdout and "600" in human.stdout


def test_git_revision_recorded_when_repo_has_a_commit(settings):
    assert cli("init").exit_code == 0
    subprocess.run(["git", "commit", "-qm", "init"], cwd=settings.home, check=True)
    info = json.loads(cli("data", "add", "digits", "--json").stdout)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=settings.home, capture_output=True, text=True).stdout
    assert info["git_rev"] == head.strip()
    assert info["feature_shape"] == [1, 8, 8] and info["rows"] == 1797


def _run_cli(home: Path, *args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "curation", *args],
        cwd=home,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_unreachable_catalog_from_the_shell(home):
    url = "postgresql+psycopg://admin:TopSecret99@127.0.0.1:1/db"
    done = _run_cli(home, "data", "add", "digits", env={"CURATION_CATALOG_URL": url})
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "TopSecret99" not in done.stderr + done.stdout
    assert "cannot reach the catalog" in done.stderr and "Traceback" not in done.stderr
    assert written_files(home) == []


@pytest.mark.parametrize(
    "point",
    [
        "register:before-publish",
        "register:after-publish",
        "register:after-dvc-add",
        "catalog:before-commit",
        "register:after-commit",
    ],
)
def test_kill_during_add_leaves_no_half_version(point, home):
    assert _run_cli(home, "init").returncode == 0
    killed = _run_cli(home, "data", "add", "mnist1d", "--samples", "200", env={"CURATION_KILL_AT": point})
    assert killed.returncode == -9
    catalog = Catalog(f"sqlite:///{home / 'catalog.db'}")
    for version in catalog.versions():  # whatever the catalog claims is whole
        assert content_md5(home / version.path) == version.content_hash == dvc_hash(home / version.path)
    assert len(catalog.versions()) == (1 if point == "register:after-commit" else 0)
    rerun = _run_cli(home, "data", "add", "mnist1d", "--samples", "200", "--json")
    assert rerun.returncode == 0, rerun.stderr
    info = json.loads(rerun.stdout)
    assert info["created"] == (point != "register:after-commit")
    versions = catalog.versions()
    assert len(versions) == 1 and dvc_hash(home / versions[0].path) == versions[0].content_hash
