"""A DVC remote in a temp folder: `curation init --remote`, every new version pushed, a missing file pulled."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curation.cli import app
from curation.data.dvc_repo import default_remote, dvc_hash
from curation.data.store import content_md5, file_md5

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def remote_objects(remote: Path) -> set[str]:
    """The md5s the remote holds (DVC 3 stores files/md5/<2 chars>/<rest>)."""
    return {p.parent.name + p.name for p in (remote / "files" / "md5").glob("*/*")}


def version_objects(home: Path, info: dict) -> set[str]:
    """What a version is in DVC's store: its folder's listing (``<md5>.dir``) and each shard's md5."""
    return {info["content_hash"]} | {file_md5(shard) for shard in (home / info["path"]).iterdir()}


def test_added_version_is_pushed_and_pulled_back_when_missing(home, tmp_path):
    from curation.config import load_settings
    from curation.data.versions import open_version

    remote = tmp_path / "remote"
    result = cli("init", "--remote", str(remote), "--json")
    assert result.exit_code == 0, result.output
    assert f"DVC remote {remote}" in json.loads(result.stdout)["done"]
    assert default_remote(home) == str(remote)

    info = json.loads(cli("data", "add", "mnist1d", "--samples", "300", "--json").stdout)
    path = home / info["path"]
    assert remote_objects(remote) == version_objects(home, info) and dvc_hash(path) == info["content_hash"]

    # another machine's checkout: the .dvc file without the bytes or the cache
    shutil.rmtree(path)
    shutil.rmtree(home / ".dvc" / "cache")
    version, reader = open_version(load_settings(), info["id"])
    assert content_md5(path) == info["content_hash"]
    assert reader.num_rows == 300 and version.id == info["id"]


def test_ingest_flow_pushes_each_new_version(prefect_server, home, tmp_path):
    from curation.config import load_settings
    from curation.project import init_project
    from flows.ingest import ingest

    remote = tmp_path / "remote"
    init_project(load_settings(), str(remote))
    first = ingest(source="mnist1d", samples=200, seed=1)
    second = ingest(source="mnist1d", samples=200, seed=2)
    assert remote_objects(remote) == version_objects(home, first) | version_objects(home, second)


def test_unreachable_remote_is_one_line_and_the_version_stays(home, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the remote folder should be")
    assert cli("init", "--remote", str(blocker)).exit_code == 0
    result = runner.invoke(app, ["data", "add", "mnist1d", "--samples", "200"])
    assert result.exit_code == 2 and "dvc push" in result.output and "Traceback" not in result.output
    listing = json.loads(cli("data", "ls", "--json").stdout)
    assert len(listing) == 1  # registered; `dvc push` (or adding it again) sends it later


def test_remote_needs_dvc(home, monkeypatch):
    monkeypatch.setenv("CURATION_DVC", "false")
    result = runner.invoke(app, ["init", "--remote", "/tmp/x"])
    assert result.exit_code == 2 and "CURATION_DVC" in result.output


@pytest.mark.parametrize("url, expected", [("s3://bucket/curation", "dvc-s3"), ("bogus://x", "Unsupported URL")])
def test_a_remote_dvc_cannot_use_is_refused_at_init(home, url, expected):
    from curation.data.dvc_repo import default_remote

    result = runner.invoke(app, ["init", "--remote", url])
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output
    assert default_remote(home) is None  # nothing written
