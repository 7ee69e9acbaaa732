"""Security: no secret leaves the process, nothing is unpickled, names stay in their folders, SQL is bound.

Also covered elsewhere (not repeated here): catalog passwords redacted in errors and `curation init`
(test_catalog.py, test_data_add.py), servers bind 127.0.0.1 (test_ui.py), safe data set names (test_store.py),
damaged or foreign checkpoints refused (test_trainer.py, test_train_cli.py).
"""

from __future__ import annotations

import ast
import json
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

import curation
from curation.cli import app
from curation.errors import CurationError

SECRET = "s3cret-Pw-71"
TOKENS = {
    "HF_TOKEN": "hf_5ecretTok3n",
    "AWS_SECRET_ACCESS_KEY": "aws5ecretKey88",
    "GITHUB_TOKEN": "ghp_5ecret99",
    "MLFLOW_TRACKING_PASSWORD": "mlflow5ecret42",
}
NEEDLES = [SECRET, *TOKENS.values()]
SOURCES = [
    p
    for root in ("curation", "flows", "models")
    for p in sorted((Path(curation.__file__).parent.parent / root).rglob("*.py"))
]


def leaks(text: str) -> list[str]:
    return [n for n in NEEDLES if n in text]


def _with_password(url: str) -> str:
    return make_url(url).set(password=SECRET).render_as_string(hide_password=False)


@pytest.fixture
def secret_project(project, monkeypatch):
    """The project with tokens in the environment and, on PostgreSQL, passwords in the catalog and tracking URLs."""
    for key, value in TOKENS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CURATION_DVC", "false")
    if project.catalog.startswith("postgresql"):
        from conftest import PG_URL, _pg_schema_url

        monkeypatch.setenv("CURATION_CATALOG_URL", _with_password(project.catalog))
        _, _, tracking = _pg_schema_url(PG_URL)  # its own schema: MLflow's tables would collide with ours
        monkeypatch.setenv("CURATION_TRACKING_URI", _with_password(tracking))
    from curation.config import load_settings

    return load_settings()


def _mlflow_text(settings) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(settings.tracking)
    ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(ids)
    assert runs, "the flow logged no MLflow run"
    return json.dumps(
        [
            {"params": r.data.params, "tags": r.data.tags, "metrics": r.data.metrics, "inputs": str(r.inputs)}
            for r in runs
        ]
    )


def _catalog_text(settings) -> str:
    from curation.catalog import Base, Catalog

    with Catalog(settings.catalog).session() as s:
        return json.dumps(
            [
                {c.name: getattr(row, c.name) for c in table.columns}
                for mapper in Base.registry.mappers
                for table in [mapper.local_table]
                for row in s.query(mapper.class_).all()
            ],
            default=str,
        )


def _artifacts_text() -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        found = client.request("POST", "/artifacts/filter", json={"limit": 200, "offset": 0, "sort": "CREATED_DESC"})
    return json.dumps(found.json())


@pytest.fixture
def logs():
    """Every log record the process creates, with its traceback if any (collected at creation: Prefect
    reconfigures handlers, and pytest's capture would close the stream its console handler keeps)."""
    lines: list[str] = []
    factory = logging.getLogRecordFactory()

    def collect(*args, **kwargs):
        record = factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        trace = "".join(traceback.format_exception(*record.exc_info)) if record.exc_info else ""
        lines.append(f"{record.name}: {message}{trace}")
        return record

    logging.setLogRecordFactory(collect)
    yield lines
    logging.setLogRecordFactory(factory)


def test_no_secret_in_logs_mlflow_prefect_catalog_files_or_errors(prefect_server, secret_project, logs):
    from curation.data import sources
    from curation.data.versions import add_version
    from flows.train import train

    settings = secret_project
    info = add_version(settings, sources.mnist1d(samples=200))
    outcome = train(version=info.ref, arch="mlp", epochs=1, device="cpu")
    with pytest.raises(CurationError) as bad:
        train(version="no-such-version", arch="mlp", epochs=1)
    assert any("accuracy" in line for line in logs)  # the flow's printed summary was collected
    shell = subprocess.run(
        [sys.executable, "-m", "curation", "data", "ls"],
        cwd=settings.home,
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    failed = subprocess.run(
        [sys.executable, "-m", "curation", "train", "999", "--arch", "mlp"],
        cwd=settings.home,
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert shell.returncode == 0 and failed.returncode == 2, shell.stderr + failed.stderr
    written = "".join(p.read_bytes().decode("latin-1") for p in settings.home.rglob("*") if p.is_file())
    places = {
        "flow output and logs": "\n".join(logs),
        "error": str(bad.value),
        "CLI": shell.stdout + shell.stderr + failed.stdout + failed.stderr,
        "MLflow": _mlflow_text(settings),
        "Prefect artifacts": _artifacts_text(),
        "catalog": _catalog_text(settings),
        "files": written,
        "outcome": json.dumps(outcome, default=str),
    }
    assert {where: leaks(text) for where, text in places.items() if leaks(text)} == {}
    assert outcome["run_id"] and "***" not in outcome["version"]


def test_a_pickled_payload_in_a_checkpoint_is_refused_and_never_runs(tmp_path):
    from curation.training.checkpoint import FORMAT, load_checkpoint

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "model.pt"
    torch.save({"format": FORMAT, "model": {}, "extra": Payload()}, path)
    with pytest.raises(CurationError, match="corrupted or not a checkpoint") as info:
        load_checkpoint(path)
    assert not marker.exists() and "\n" not in str(info.value)
    torch.load(path, weights_only=False)  # the payload is real: unpickling it would have run it
    assert marker.exists()


def _calls(tree: ast.AST, name: str):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called == name:
                yield node


def test_nothing_is_unpickled_anywhere_in_the_tool():
    """Checkpoints load with weights_only=True; arrays without pickle; no pickle, joblib or read_pickle at all."""
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not {"pickle", "cloudpickle", "dill", "joblib"} & set(names), f"{path}: imports {names}"
        for node in _calls(tree, "load"):
            keywords = {k.arg: k.value for k in node.keywords}
            source = ast.unparse(node)
            if source.startswith("torch.load"):
                weights_only = keywords.get("weights_only")
                assert isinstance(weights_only, ast.Constant) and weights_only.value is True, f"{path}: {source}"
            if source.startswith("np.load"):  # numpy refuses pickles unless allow_pickle=True
                assert "allow_pickle" not in keywords or keywords["allow_pickle"].value is False, f"{path}: {source}"
        assert not list(_calls(tree, "read_pickle")), path


def _constant_sql(node: ast.AST) -> bool:
    """A literal string, or an f-string whose only holes are module constants (UPPER_CASE names)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return all(
            isinstance(v, ast.Constant)
            or (isinstance(v, ast.FormattedValue) and isinstance(v.value, ast.Name) and v.value.id.isupper())
            for v in node.values
        )
    return False


def test_sql_only_through_the_orm_or_bound_parameters():
    """Every text()/execute()/exec_driver_sql() of raw SQL in the tool is a constant: values travel as parameters."""
    checked = 0
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        for name in ("text", "execute", "exec_driver_sql", "executescript"):
            for node in _calls(tree, name):
                if not node.args or (name == "text" and isinstance(node.func, ast.Attribute)):
                    continue  # ax.text(x, y, label) and the like: not SQL
                sql = node.args[0]
                if isinstance(sql, ast.Call):  # execute(text("...")) or execute(select(...)): checked at the inner call
                    continue
                assert _constant_sql(sql), f"{path}:{node.lineno}: SQL built from values: {ast.unparse(node)}"
                checked += 1
    assert checked >= 4  # the SQLite pragmas and the PostgreSQL advisory lock


def test_the_sql_check_catches_interpolation():
    bad = ast.parse('conn.execute(text(f"SELECT * FROM t WHERE name = {name}"))').body[0].value.args[0].args[0]
    good = ast.parse('cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")').body[0].value.args[0]
    assert not _constant_sql(bad) and _constant_sql(good)
    assert not _constant_sql(ast.parse('"SELECT " + name').body[0].value)


@pytest.mark.parametrize(
    "args",
    [
        ["data", "add", "digits", "--name", "../../escaped"],
        ["data", "add", "digits", "--name", "/tmp/escaped"],
        ["retrain", "stream", "--lineage", "../../escaped"],
        ["data", "show", "../../../etc/passwd"],
    ],
)
def test_names_cannot_escape_their_folders(settings, args):
    outside = settings.home.parent
    before = sorted(outside.iterdir())
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(outside.iterdir()) == before and not list(outside.parent.rglob("escaped*"))
    assert not Path("/tmp/escaped").exists()
