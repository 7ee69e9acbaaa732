"""The DVC pipeline (dvc.yaml, params.yaml, curation/stages.py) in a real git + DVC repository.

The repository is this project's committed pipeline files and code (the stages' code dependencies),
with small data and one epoch; `dvc` and `curation` run as subprocesses, as a user runs them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ALL_STAGES = {"prepare", "score", "baseline", "select", "train", "method@selective-backprop", "evaluate", "report"}
SMALL = {
    "data": {"samples": 300},
    "score": {"epochs": 1},
    "train": {"epochs": 1},
    "compare": {"methods": ["selective-backprop"], "ratio": 0.5},
}


def _merge(base: dict, update: dict) -> dict:
    return {
        k: _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
        for k, v in {**base, **update}.items()
    }


def _project(path: Path, params: dict) -> tuple[Path, dict]:
    """A git repository holding the pipeline, the code it depends on and ``params`` merged into params.yaml."""
    path.mkdir()
    for name in ("dvc.yaml", ".gitignore", ".dvcignore", ".dvc/config", ".dvc/.gitignore", ".dvc/plots"):
        (path / name).parent.mkdir(exist_ok=True)
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, path / name)
    for package in ("curation", "models"):
        shutil.copytree(ROOT / package, path / package, ignore=shutil.ignore_patterns("__pycache__"))
    (path / "params.yaml").write_text(
        yaml.safe_dump(_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), params))
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CURATION_") or k == "CURATION_TEST_PG_URL"}
    env.pop("CURATION_TEST_PG_URL", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "pipeline"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True)
    return path, env


def _run(repo: tuple[Path, dict], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    path, env = repo
    result = subprocess.run(list(args), cwd=path, env=env, capture_output=True, text=True, timeout=1800)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def _ran(result: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", result.stdout + result.stderr))


def _changed(path: Path) -> set[str]:
    """Paths git sees as changed or new."""
    status = subprocess.run(["git", "status", "--porcelain"], cwd=path, capture_output=True, text=True, check=True)
    return {line[3:] for line in status.stdout.splitlines()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A project after its first `dvc repro`, with that run's output."""
    repo = _project(tmp_path_factory.mktemp("pipeline") / "repo", SMALL)
    return repo, _run(repo, "dvc", "repro")


def test_first_repro_runs_every_stage_and_writes_metrics(built):
    (path, env), first = built
    assert _ran(first) == ALL_STAGES
    metrics = json.loads((path / "pipeline" / "evaluate" / "metrics.json").read_text())
    assert set(metrics) == {"full", "select", "selective-backprop"}
    assert 0 < metrics["select"]["best_accuracy"] <= 1 and 0 < metrics["select"]["coverage"] <= 1
    assert metrics["full"]["coverage"] == 1.0
    assert "soft ratio=0.3" in (path / "pipeline" / "report" / "table.md").read_text()
    assert {p.name for p in (path / "pipeline" / "report").glob("*.png")} >= {
        "accuracy_vs_compute.png",
        "coverage.png",
        "speedup.png",
    }
    assert _changed(path) <= {"dvc.lock"}  # run state and outputs are ignored by git
    shown = _run((path, env), "dvc", "metrics", "show", "--json").stdout
    assert "best_accuracy" in shown


def test_second_repro_runs_nothing(built):
    repo, _ = built
    again = _run(repo, "dvc", "repro")
    assert _ran(again) == set()
    assert "up to date" in again.stdout


def test_forced_select_writes_the_same_plan_so_training_stays_cached(built):
    repo, _ = built
    assert _ran(_run(repo, "dvc", "repro", "--force", "--single-item", "select")) == {"select"}
    assert "up to date" in _run(repo, "dvc", "status").stdout


def test_exp_run_with_a_new_ratio_reruns_exactly_select_and_after(built):
    (path, env), _ = built
    subprocess.run(["git", "add", "dvc.lock"], cwd=path, env=env, check=True)
    subprocess.run(["git", "commit", "-qm", "results"], cwd=path, env=env, check=True)
    changed = _run((path, env), "dvc", "exp", "run", "-S", "select.ratio=0.5")
    assert _ran(changed) == {"select", "train", "evaluate", "report"}
    assert json.loads((path / "pipeline" / "select" / "plan.json").read_text())["ratio"] == 0.5
    method = _run((path, env), "dvc", "exp", "run", "-S", "select.method=uniform")
    assert _ran(method) == {"select", "train", "evaluate", "report"}
    plan = json.loads((path / "pipeline" / "select" / "plan.json").read_text())
    assert (plan["method"], plan["params"]["budget"]) == ("uniform", 0.5)
    assert "soft" not in (path / "pipeline" / "report" / "table.md").read_text()
    shown = json.loads(_run((path, env), "dvc", "exp", "show", "--json").stdout)
    assert "uniform" in json.dumps(shown)


@pytest.mark.parametrize(
    "params, key",
    [
        ({"select": {"ration": 0.3}}, "select.ration"),
        ({"select": {"ratio": 1.5}}, "select.ratio"),
        ({"train": {"device": "tpu"}}, "train.device"),
        ({"compare": {"methods": ["nope"]}}, "compare.methods"),
    ],
)
def test_bad_params_give_one_line_naming_the_key_and_write_nothing(tmp_path, monkeypatch, params, key):
    from typer.testing import CliRunner

    from curation.cli import app

    path, _ = _project(tmp_path / "repo", params)
    monkeypatch.chdir(path)
    result = CliRunner().invoke(app, ["stage", "prepare"])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and key in result.output, result.output
    assert sorted(p.name for p in path.iterdir()) == [
        ".dvc",
        ".dvcignore",
        ".git",
        ".gitignore",
        "curation",
        "dvc.yaml",
        "models",
        "params.yaml",
    ]


def test_dvc_repro_stops_on_an_unknown_key_before_any_output(tmp_path):
    repo = _project(tmp_path / "repo", {"train": {"epochz": 3}})
    repro = _run(repo, "dvc", "repro", check=False)
    assert repro.returncode != 0 and "unknown key 'train.epochz'" in repro.stderr
    assert "Traceback" not in repro.stderr
    path = repo[0]
    assert not (path / "pipeline").exists() and not (path / "catalog.db").exists()
    assert not (path / "dvc.lock").exists() and _changed(path) == set()


def test_the_shipped_params_are_valid_and_methods_get_equal_compute(monkeypatch):
    from curation.selection.selective_backprop import SelectiveBackprop
    from curation.stages import load_params, method_params

    params = load_params(ROOT / "params.yaml")
    assert {params.select.method, *params.compare.methods} >= {"soft", "selective-backprop"}
    assert method_params("soft", 0.3, 1) == {"ratio": 0.3, "seed": 1}
    assert method_params("kcenter", 0.3, 1, {"source": "features"}) == {"budget": 0.3, "seed": 1, "source": "features"}
    assert method_params("selective-backprop", 0.25, 0)["beta"] == pytest.approx(3.0)
    # beta 2: an epoch after the warm-up costs (1 + 3/3) / 3 = 2/3 of a full epoch, so 9 more epochs for 6
    assert SelectiveBackprop(beta=2.0).equal_compute_epochs(7) == 10
    assert method_params("infobatch", 0.3, 2) == {"seed": 2}  # InfoBatch picks its own share
