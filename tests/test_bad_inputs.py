"""The bad-input table: every case through the CLI, the Python API or a flow gives one line (problem + fix),
exit code 2 or a CurationError, and changes nothing: catalog rows, files under data/, `.dvc` files, MLflow runs.

All cases run against one prepared project (a version, a finished training run, a plan): since a rejected
input must change nothing, the project is shared, and the state is compared before and after every case.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from test_faults import query
from typer.testing import CliRunner

from curation.cli import app
from curation.errors import CurationError

TRAIN = ["--arch", "mlp", "--epochs", "1", "--device", "cpu"]


def _csv(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _parquet(path: Path, table: pa.Table) -> str:
    pq.write_table(table, path)
    return str(path)


def _png(size: tuple[int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", size, 128).save(buffer, format="PNG")
    return buffer.getvalue()


def _image_folder(root: Path, files: dict[str, bytes | None]) -> str:
    """A folder with one subfolder per class; a None file makes an empty class folder."""
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            path.write_bytes(data)
    return str(root)


def _files(tmp: Path) -> dict[str, str]:
    """The bad files the cases read (outside the project)."""
    corrupt = tmp / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1" + os.urandom(300))
    (tmp / "empty.csv").write_text("")
    return {
        "corrupt": str(corrupt),
        "empty": str(tmp / "empty.csv"),
        "dup": _parquet(
            tmp / "dup.parquet", pa.table({"sample_id": [1, 2, 2], "a": [0.1, 0.2, 0.3], "label": [0, 1, 0]})
        ),
        "nan": _parquet(tmp / "nan.parquet", pa.table({"a": [0.1, float("nan")], "label": [0, 1]})),
        "bool": _parquet(tmp / "bool.parquet", pa.table({"a": [True, False], "label": [0, 1]})),
        "date": _parquet(tmp / "date.parquet", pa.table({"a": pa.array([1, 2], pa.timestamp("s")), "label": [0, 1]})),
        "biglabel": _parquet(tmp / "biglabel.parquet", pa.table({"a": [0.1, 0.2], "label": [0, 2**40]})),
        "nolabel": _csv(tmp / "nolabel.csv", "a,b\n1,2\n"),
        "text": _csv(tmp / "text.csv", "a,b,label\n1,x,0\n2,y,1\n"),
        "nancsv": _csv(tmp / "nan.csv", "a,label\n1.0,0\nnan,1\n"),
        "inf": _csv(tmp / "inf.csv", "a,label\n1.0,0\ninf,1\n"),
        "huge": _csv(tmp / "huge.csv", "a,label\n1e300,0\n1,1\n"),
        "float": _csv(tmp / "flt.csv", "a,label\n1.0,0.5\n2.0,1\n"),
        "oneclass": _csv(tmp / "one.csv", "a,label\n1.0,cat\n2.0,cat\n3.0,cat\n"),
        "badsplit": _csv(tmp / "split.csv", "a,label,part\n1.0,cat,train\n2.0,dog,valid\n3.0,dog,test\n"),
        "badimage": _parquet(
            tmp / "img.parquet",
            pa.table({"image": pa.array([_png((4, 4)), b"\x89PNG not really"] * 2, pa.binary()), "label": [0, 1] * 2}),
        ),
        "noimage": _parquet(
            tmp / "noimg.parquet",
            pa.table({"image": pa.array([_png((4, 4)), None] * 2, pa.binary()), "label": [0, 1] * 2}),
        ),
        "mixedsizes": _image_folder(
            tmp / "sizes",
            {"a/1.png": _png((4, 4)), "a/2.png": _png((4, 4)), "b/3.png": _png((5, 4)), "b/4.png": _png((4, 4))},
        ),
        "emptyclass": _image_folder(
            tmp / "hollow", {"a/1.png": _png((4, 4)), "a/2.png": _png((4, 4)), "b/.keep": None}
        ),
        "header": _csv(tmp / "hdr.csv", "a,label\n"),
        "plan": _parquet(
            tmp / "plan.parquet",
            pa.table({"epoch": pa.array([-1, -1], pa.int32()), "sample_id": pa.array([0, 10**9], pa.int64())}),
        ),
        "config": _csv(tmp / "curation.toml", "catalog_url = 'sqlite:///x.db'\nno_such_key = 1\n"),
    }


def _api_chunk_schema(settings, files):
    from curation.data.contract import build_table
    from curation.data.sources import Loaded
    from curation.data.stream import add_chunk

    narrow = Loaded(build_table(np.ones((5, 3), np.float32), np.zeros(5, int)), {}, "x")
    add_chunk(settings, "base", narrow)  # a later chunk whose schema differs from the data set's


def _api_wrong_dtypes(settings, files):
    from curation.data.contract import build_table

    build_table(np.array([["a", "b"], ["c", "d"]]), np.zeros(2, int))


def _api_budget_string(settings, files):
    from curation.selection.run import select_plan

    select_plan(settings, "base", "uniform", {"budget": "ten", "seed": 0})


def _api_train_negative_epochs(settings, files):
    from curation.training import TrainConfig

    TrainConfig.make(arch="mlp", epochs=-3)


def _api_unknown_method_param(settings, files):
    from curation.selection.base import make_selector

    make_selector("uniform", budget=10, temperature=2)


def _flow_ingest(settings, files):
    from flows.ingest import ingest

    ingest(source=files["oneclass"], name="oneclass")


def _flow_curate(settings, files):
    from flows.curate import curate

    curate(version="base", method="uniform", params={"budget": "lots"})


def _flow_score(settings, files):
    from flows.score import score

    score(version="base", arch="mlp", epochs=1, model_version=999)


# case id -> (kind, what to run, what the one line says). kind: cli (args), api or flow (a callable).
CASES = {
    # data add: files
    "missing file": ("cli", ["data", "add", "{tmp}/nope.csv"], "does not exist"),
    "corrupt parquet": ("cli", ["data", "add", "{corrupt}"], "cannot read"),
    "empty file": ("cli", ["data", "add", "{empty}"], "is empty"),
    "header only": ("cli", ["data", "add", "{header}"], "no rows"),
    "no label column": ("cli", ["data", "add", "{nolabel}", "--label-column", "y"], "column 'y' not found"),
    "non-numeric features": ("cli", ["data", "add", "{text}"], "not numeric"),
    "bool features": ("cli", ["data", "add", "{bool}"], "not numeric"),
    "timestamp features": ("cli", ["data", "add", "{date}"], "not numeric"),
    "nan in csv": ("cli", ["data", "add", "{nancsv}"], "1 missing values"),
    "nan features": ("cli", ["data", "add", "{nan}"], "NaN, inf"),
    "inf features": ("cli", ["data", "add", "{inf}"], "NaN, inf"),
    "huge features": ("cli", ["data", "add", "{huge}"], "beyond float32"),
    "huge labels": ("cli", ["data", "add", "{biglabel}"], "labels outside int32"),
    "float labels": ("cli", ["data", "add", "{float}"], "not integers"),
    "one class": ("cli", ["data", "add", "{oneclass}"], "only one class ('cat')"),
    "split column with unknown names": (
        "cli",
        ["data", "add", "{badsplit}", "--split-column", "part"],
        "split names ['valid'] (allowed: train, test)",
    ),
    "undecodable image bytes": ("cli", ["data", "add", "{badimage}"], "cannot decode image in row 1"),
    "a missing image": ("cli", ["data", "add", "{noimage}"], "has missing images (first in row 1)"),
    "images of mixed sizes": ("cli", ["data", "add", "{mixedsizes}"], "images have different sizes"),
    "empty class folder": ("cli", ["data", "add", "{emptyclass}"], "is empty"),
    "bad image size": ("cli", ["data", "add", "{mixedsizes}", "--image-size", "4by4"], "is not HEIGHTxWIDTH"),
    "bad test fraction": ("cli", ["data", "add", "{oneclass}", "--test-fraction", "1.5"], "between 0 and 1"),
    "duplicate ids": ("cli", ["data", "add", "{dup}"], "duplicate sample ids"),
    # data add: names and options
    "name with separator": ("cli", ["data", "add", "digits", "--name", "a/b"], "bad data set name"),
    "name with dots": ("cli", ["data", "add", "digits", "--name", ".."], "bad data set name"),
    "unknown source": ("cli", ["data", "add", "mnist2d"], "does not exist"),
    "negative seed": ("cli", ["data", "add", "mnist1d", "--seed", "-1"], "--seed must be >= 0"),
    "bad parent": ("cli", ["data", "add", "digits", "--parent", "999"], "no data set version '999'"),
    # select, score, train, retrain, compare
    "budget as a string": ("cli", ["select", "base", "-m", "uniform", "--budget", "ten"], "is not a number"),
    "budget above N": ("cli", ["select", "base", "-m", "uniform", "--budget", "100000"], "larger than the 240 samples"),
    "unknown method": ("cli", ["select", "base", "-m", "telepathy"], "unknown selection method"),
    "param not key=value": ("cli", ["select", "base", "-m", "uniform", "-p", "budget"], "is not key=value"),
    "param value not YAML": ("cli", ["select", "base", "-m", "uniform", "-p", "budget=[1,"], "is not valid YAML"),
    "select negative seed": (
        "cli",
        ["select", "base", "-m", "soft", "--ratio", "0.3", "--seed", "-5"],
        "seed must be a non-negative integer",
    ),
    "unknown version": ("cli", ["select", "nosuch", "-m", "soft"], "no data set version 'nosuch'"),
    "score epochs 0": ("cli", ["score", "base", "--epochs", "0"], "--epochs must be at least 1"),
    "score unknown model": ("cli", ["score", "base", "--model", "999"], "no model version 999"),
    "train unknown arch": ("cli", ["train", "base", "--arch", "resnet9000"], "unknown architecture"),
    "train zero batch": ("cli", ["train", "base", *TRAIN, "--batch-size", "0"], "bad training setting 'batch_size'"),
    "train negative lr": ("cli", ["train", "base", *TRAIN, "--lr", "-1"], "bad training setting 'lr'"),
    "train missing plan": ("cli", ["train", "base", *TRAIN, "--plan", "999"], "no selection plan 999"),
    "hand-made plan file": ("cli", ["train", "base", *TRAIN, "--plan", "{plan}"], "sample ids are not in this version"),
    "train bad baseline": ("cli", ["train", "base", *TRAIN, "--baseline", "999"], "baseline run 999"),
    "resume with nothing to resume": ("cli", ["train", "base", *TRAIN, "--seed", "7", "--resume"], "to resume"),
    "retrain unknown data set": ("cli", ["retrain", "nosuch"], "has no versions"),
    "retrain rho 0": ("cli", ["retrain", "base", "--rho", "0"], "rho 0.0 is outside (0, 1]"),
    "show an unknown run": ("cli", ["runs", "show", "999"], "no training run 999 in the catalog"),
    "list an unknown data set": ("cli", ["plans", "ls", "--dataset", "nosuch"], "no data set 'nosuch'"),
    "compare unknown method": ("cli", ["compare", "base", "-m", "telepathy:budget=0.3"], "unknown selection method"),
    # settings
    "config with an unknown key": ("env", {"CURATION_CONFIG": "{config}"}, "no_such_key"),
    "catalog URL not a URL": ("env", {"CURATION_CATALOG_URL": "not a url"}, "not a database URL"),
    "params.yaml with an unknown key": ("params", "seed: 0\ntrain:\n  epochz: 3\n", "unknown key 'train.epochz'"),
    # Python API
    "api: later chunk with another schema": ("api", _api_chunk_schema, "differs"),
    "api: wrong dtypes": ("api", _api_wrong_dtypes, "non-numeric features"),
    "api: budget as a string": ("api", _api_budget_string, "budget must be a number, got 'ten'"),
    "api: negative epochs": ("api", _api_train_negative_epochs, "bad training setting 'epochs'"),
    "api: unknown method parameter": ("api", _api_unknown_method_param, "unknown parameters for uniform"),
    # flows
    "flow: ingest one class": ("flow", _flow_ingest, "only one class"),
    "flow: curate budget as a string": ("flow", _flow_curate, "budget must be a number, got 'lots'"),
    "flow: score with a missing model": ("flow", _flow_score, "no model version 999"),
}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def state(home: Path) -> dict:
    """What a rejected input must leave as it was."""
    tables = [t for (t,) in query(home / "catalog.db", "SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {
        "rows": {t: query(home / "catalog.db", f'SELECT count(*) FROM "{t}"')[0][0] for t in tables},
        "data": {str(p.relative_to(home)): md5(p) for p in sorted((home / "data").rglob("*")) if p.is_file()},
        "dvc": sorted(str(p.relative_to(home)) for p in home.rglob("*.dvc")),
        "dvc cache": sorted(str(p.relative_to(home)) for p in (home / ".dvc" / "cache").rglob("*") if p.is_file()),
        "mlflow": query(home / "mlflow" / "mlflow.db", "SELECT run_uuid, status FROM runs ORDER BY run_uuid"),
        "registry": query(home / "mlflow" / "mlflow.db", "SELECT name, version FROM model_versions"),
    }


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from curation.catalog.engine import connect

    root = tmp_path_factory.mktemp("bad-inputs")
    home, inputs = root / "project", root / "inputs"
    home.mkdir(), inputs.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("CURATION_")]:
            mp.delenv(key)
        mp.setenv("CURATION_HOME", str(home))
        mp.chdir(home)
        for args in (
            ["init"],
            ["data", "add", "mnist1d", "--samples", "300", "--name", "base"],
            ["train", "base", *TRAIN],
            ["select", "base", "-m", "uniform", "--budget", "30"],
        ):
            result = CliRunner().invoke(app, args, catch_exceptions=False)
            assert result.exit_code == 0, result.output
        connect.cache_clear()
    return home, {"tmp": str(inputs), **_files(inputs)}


def test_the_table_has_at_least_thirty_cases_across_cli_api_and_flows():
    kinds = [kind for kind, _, _ in CASES.values()]
    assert len(CASES) >= 30 and {"cli", "api", "flow", "env", "params"} <= set(kinds)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_changes_nothing(case, prepared, monkeypatch, request):
    home, files = prepared
    kind, what, expected = CASES[case]
    for key in [k for k in os.environ if k.startswith("CURATION_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("CURATION_HOME", str(home))
    monkeypatch.chdir(home)
    before = state(home)
    if kind in ("cli", "env", "params"):
        args = ["data", "ls"]
        if kind == "cli":
            args = [a.format(**files) for a in what]
        elif kind == "env":
            for key, value in what.items():
                monkeypatch.setenv(key, value.format(**files))
        else:  # the DVC pipeline's stages read params.yaml from the project root
            (home / "params.yaml").write_text(what)
            args = ["stage", "prepare"]
        try:
            result = CliRunner().invoke(app, args)
        finally:
            (home / "params.yaml").unlink(missing_ok=True)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], result.stderr
        message = lines[0]
    else:
        if kind == "flow":
            request.getfixturevalue("prefect_server")
        from curation.config import load_settings

        with pytest.raises(CurationError) as info:
            what(load_settings(), files)
        message = str(info.value)
        assert "\n" not in message and expected in message, message
    assert " -> " in message or ";" in message or ":" in message  # the problem and its fix
    assert state(home) == before


_VALUES = {  # Arrow type -> values hypothesis draws for a column of it (nulls included)
    pa.int64(): st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    pa.float64(): st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    pa.string(): st.one_of(st.none(), st.text(max_size=5)),
    pa.bool_(): st.one_of(st.none(), st.booleans()),
    pa.list_(pa.float32()): st.one_of(st.none(), st.lists(st.floats(-1e3, 1e3, width=32), max_size=3)),
}


@st.composite
def parquet_tables(draw):
    rows = draw(st.integers(0, 6))
    names = draw(
        st.lists(
            st.sampled_from(["label", "sample_id", "split", "features", "a", "b"]), min_size=1, max_size=4, unique=True
        )
    )
    columns = {}
    for name in names:
        type_ = draw(st.sampled_from(list(_VALUES)))
        columns[name] = pa.array(draw(st.lists(_VALUES[type_], min_size=rows, max_size=rows)), type_)
    return pa.table(columns)


@hsettings(max_examples=80, deadline=None)
@given(table=parquet_tables())
def test_structured_parquet_fuzz_gives_a_valid_table_or_one_line(tmp_path_factory, table):
    """Well-formed Parquet files with any columns, types, nulls, NaN/inf and extreme values (the byte-level fuzz
    of the CSV/Parquet readers is in test_store.py): a contract-valid table or a one-line CurationError."""
    from curation.data.sources import from_file
    from curation.data.store import features_numpy

    path = tmp_path_factory.mktemp("pq") / "f.parquet"
    pq.write_table(table, path)
    try:
        loaded = from_file(path)
    except CurationError as exc:
        assert "\n" not in str(exc)
    else:
        out = loaded.whole()
        assert out.num_rows == table.num_rows > 0
        assert out.schema.field("sample_id").type == pa.int64() and out.schema.field("label").type == pa.int32()
        ids = out.column("sample_id").to_numpy()
        assert (ids[1:] > ids[:-1]).all() and np.isfinite(features_numpy(out)).all()
