"""Seeded fault injection: kill -9 at named points in every stage, then prove the project consistent.

Each case restores one prepared project (a data set, a retrain lineage with a champion and a new chunk),
runs the real CLI in a subprocess with CURATION_KILL_AT, and checks: every file the catalog claims exists with
its hash, every `.dvc` file matches its data, MLflow aliases point at versions the catalog claims; then reruns
the command and checks that no MLflow or catalog run is left RUNNING and that the result equals an uninterrupted
run's.

CI runs a seeded sample with every stage covered (FAULT_SEED, default 0); FAULT_POINTS=all runs every point
(not CURATION_*: conftest clears those before collection).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from curation.data.store import content_md5

TRAIN = ["--arch", "mlp", "--epochs", "2", "--batch-size", "64", "--device", "cpu", "--json"]
RETRAIN = ["--arch", "mlp", "--epochs", "1", "--passes", "1", "--min-samples", "1", "--device", "cpu", "--json"]
STAGES = {  # stage -> (command, kill points it passes)
    "ingest": (
        ["data", "add", "mnist1d", "--samples", "240", "--seed", "7", "--name", "extra", "--json"],
        [
            "register:before-publish",
            "register:after-publish",
            "register:after-dvc-add",
            "catalog:before-commit",
            "register:after-commit",
        ],
    ),
    "file ingest": (  # a tabular file is written a row group at a time
        ["data", "add", "table.csv", "--label-column", "kind", "--name", "table", "--json"],
        ["stage:row-group-0", "register:before-publish", "register:after-commit"],
    ),
    "scoring": (
        ["score", "base", "--arch", "mlp", "--epochs", "1", "--device", "cpu", "--json"],
        ["train:epoch-0:batch-1", "score:batch-0", "score:before-write", "score:before-commit"],
    ),
    "selection": (
        ["select", "base", "-m", "uniform", "--budget", "60", "--seed", "1", "--json"],
        ["select:after-fit", "select:after-write", "select:before-commit"],
    ),
    "training": (
        ["train", "base", *TRAIN],
        [
            "mlflow:after-start",
            "train:epoch-1:batch-2",
            "checkpoint:before-rename",
            "train:before-finish",
            "mlflow:before-end",
        ],
    ),
    "retraining": (
        ["retrain", "stream", *RETRAIN],
        ["mlflow:after-start", "train:epoch-0:batch-1", "retrain:before-finish", "mlflow:before-end"],
    ),
    "promotion": (
        ["retrain", "stream", *RETRAIN],
        ["retrain:before-publish", "retrain:before-alias", "retrain:after-alias", "retrain:before-ship-commit"],
    ),
}
MOVES_ALIAS = {"retrain:after-alias", "retrain:before-ship-commit"}  # the committed champion got its alias
ALL = [(stage, point) for stage, (_, points) in STAGES.items() for point in points]


def _cases() -> list[tuple[str, str]]:
    if os.environ.get("FAULT_POINTS") == "all":
        return ALL
    rng = random.Random(int(os.environ.get("FAULT_SEED", "0")))
    return [(stage, rng.choice(points)) for stage, (_, points) in STAGES.items()]


def md5(path: Path) -> str:
    return content_md5(path)  # a file's md5, or a version folder's (DVC's hash of its shards)


def query(db: Path, sql: str) -> list[tuple]:
    """Read a SQLite store with a fresh connection (no engine cached across restored projects)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql).fetchall()


class Project:
    """The prepared project at a fixed path, restored from a pristine copy before every run."""

    def __init__(self, work: Path, pristine: Path):
        self.work, self.pristine = work, pristine
        self.catalog, self.mlflow = work / "catalog.db", work / "mlflow" / "mlflow.db"
        self.references: dict[str, dict] = {}

    def restore(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.copytree(self.pristine, self.work, symlinks=True)

    def cli(self, args: list[str], kill_at: str | None = None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CURATION_")}
        env |= {"CURATION_HOME": str(self.work)} | ({"CURATION_KILL_AT": kill_at} if kill_at else {})
        return subprocess.run(
            [sys.executable, "-m", "curation", *args],
            cwd=self.work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def rows(self, sql: str) -> list[tuple]:
        return query(self.catalog, sql)

    def runs(self) -> dict[str, str]:
        return dict(query(self.mlflow, "SELECT run_uuid, status FROM runs"))

    def aliases(self) -> dict[tuple[str, str], str]:
        return {
            (n, a): str(v)
            for n, a, v in query(self.mlflow, "SELECT name, alias, version FROM registered_model_aliases")
        }

    def result(self, stage: str) -> dict:
        """What a stage produced, in the terms an uninterrupted run must reproduce."""
        if stage in ("ingest", "file ingest"):
            return {
                "versions": self.rows(
                    "SELECT d.name, v.content_hash, v.rows FROM dataset_versions v "
                    "JOIN datasets d ON d.id = v.dataset_id ORDER BY v.id"
                )
            }
        if stage == "scoring":
            return {"scores": self.rows("SELECT id, content_hash, columns FROM score_sets")}
        if stage == "selection":
            return {"plans": self.rows("SELECT id, method, budget, seed, content_hash FROM selection_plans")}
        finished = [
            (v, a, json.loads(m))
            for v, a, m in self.rows(
                "SELECT version_id, architecture, metrics FROM training_runs WHERE status = 'FINISHED' ORDER BY id"
            )
        ]
        history = [
            (v, a, [round(e["accuracy"], 6) for e in m.get("history", [])], m["summary"].get("accuracy"))
            for v, a, m in finished
        ]
        if stage == "training":  # a new run per call: the newest finished one must match (a run killed after
            return {"last": history[-1]}  # its commit, before MLflow ended, is finished already)
        return {
            "finished": history,
            "models": [
                (json.loads(m)["promoted"] if "promoted" in m else None)
                for (m,) in self.rows("SELECT metrics FROM model_versions ORDER BY id")
            ],
            "shipped_updates": self.rows("SELECT sequence, bytes, rho FROM shipped_updates ORDER BY id"),
            "aliased": sorted(a for (_, a) in self.aliases()),
        }

    def check_consistent(self) -> None:
        """Everything the catalog claims is on disk with its hash; DVC and the MLflow aliases agree with it."""
        home = self.work
        claims = self.rows(
            "SELECT path, content_hash FROM dataset_versions UNION ALL "
            "SELECT path, content_hash FROM score_sets UNION ALL "
            "SELECT path, content_hash FROM selection_plans WHERE path IS NOT NULL UNION ALL "
            "SELECT path, content_hash FROM model_versions"
        )
        for path, digest in claims:
            assert (home / path).exists() and md5(home / path) == digest, f"catalog claims {path} ({digest})"
        for path, size in self.rows("SELECT path, bytes FROM shipped_updates"):
            assert (home / path).stat().st_size == size, path
        for dvc in (home / "data").rglob("*.dvc"):  # every .dvc file describes the bytes beside it
            recorded = next(line.split(":")[1].strip() for line in dvc.read_text().splitlines() if "md5:" in line)
            assert md5(dvc.with_suffix("")) == recorded, f"{dvc} does not match its data"
        versions = {(d, v) for d, v in self.rows("SELECT name, registry_version FROM model_versions")}
        for (name, _), version in self.aliases().items():
            assert (name, version) in versions, f"alias points at {name} v{version}, unknown to the catalog"
        unfinished_models = self.rows(
            "SELECT m.id FROM model_versions m JOIN training_runs r ON r.id = m.run_id WHERE r.status != 'FINISHED'"
        )
        assert unfinished_models == [], "a model row without its finished run"


def _prepare(work: Path) -> None:
    """A project with git + DVC, one data set, and a retrain lineage with a champion and a new chunk waiting."""
    from typer.testing import CliRunner

    from curation.cli import app
    from curation.config import load_settings
    from curation.data.stream import add_chunk, drifting_mnist1d

    def cli(*args):
        result = CliRunner().invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output

    cli("init")
    cli("data", "add", "mnist1d", "--samples", "300", "--name", "base")
    rng = np.random.default_rng(0)  # a CSV with class names and no split, for the file ingest stage
    rows = [
        "a,b,c,kind",
        *(
            f"{x:.4f},{y:.4f},{z:.4f},{k}"
            for (x, y, z), k in zip(rng.normal(size=(200, 3)), rng.choice(["cat", "dog"], 200))
        ),
    ]
    (work / "table.csv").write_text("\n".join(rows) + "\n")
    settings = load_settings()
    add_chunk(settings, "stream", drifting_mnist1d(0, samples=240, seed=2))
    cli("retrain", "stream", *RETRAIN)
    add_chunk(settings, "stream", drifting_mnist1d(1, samples=240, seed=2))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from curation.catalog.engine import connect

    root = tmp_path_factory.mktemp("faults")
    work, pristine = root / "project", root / "pristine"
    work.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("CURATION_")]:
            mp.delenv(key)
        mp.setenv("CURATION_HOME", str(work))
        mp.chdir(work)
        _prepare(work)
        connect(f"sqlite:///{work / 'catalog.db'}").dispose()
        connect.cache_clear()
    shutil.copytree(work, pristine, symlinks=True)
    return Project(work, pristine)


def reference(project: Project, stage: str) -> dict:
    """The stage's result when nothing is killed (one run per command, shared by the stages that run it)."""
    if stage not in project.references:
        project.restore()
        command = STAGES[stage][0]
        done = project.cli(command)
        assert done.returncode == 0, done.stderr
        for other, (same, _) in STAGES.items():
            if same == command:
                project.references[other] = project.result(other)
    return project.references[stage]


@pytest.mark.parametrize(("stage", "point"), _cases(), ids=[f"{s}-{p}" for s, p in _cases()])
def test_kill_leaves_a_consistent_project_and_the_rerun_completes_the_work(prepared, stage, point):
    expected = reference(prepared, stage)
    prepared.restore()
    aliases_before = prepared.aliases()
    command = STAGES[stage][0]

    killed = prepared.cli(command, kill_at=point)
    assert killed.returncode == -9, f"{point} was never reached: {killed.stderr[-800:]}"
    prepared.check_consistent()
    moved = {k: v for k, v in prepared.aliases().items() if aliases_before.get(k) != v}
    assert not moved or point in MOVES_ALIAS, f"the champion alias moved: {moved}"

    rerun = prepared.cli(command)
    assert rerun.returncode == 0, rerun.stderr
    prepared.check_consistent()
    assert "RUNNING" not in prepared.runs().values(), "a killed run was left RUNNING after the next start"
    assert not prepared.rows("SELECT id FROM training_runs WHERE status = 'RUNNING'"), (
        "a killed catalog run was left RUNNING after the next start"
    )
    assert prepared.result(stage) == expected


def test_the_fault_table_covers_every_stage_with_at_least_twenty_points():
    assert len({point for _, point in ALL}) >= 20 and len(ALL) >= 24
    assert {stage for stage, _ in _cases()} == set(STAGES)
    import curation

    source = "\n".join(p.read_text() for p in Path(curation.__file__).parent.rglob("*.py"))
    for _, point in ALL:  # every named point exists in the code (the per-batch ones are formatted)
        assert f'"{point}"' in source or point.startswith(("train:epoch-", "score:batch-", "stage:row-group-")), point
