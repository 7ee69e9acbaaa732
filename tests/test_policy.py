"""The drift-reactive pass policy: more passes after a drift, the fixed policy's budget kept, the same
decisions after a kill, recorded in the run (catalog and MLflow); through the real retrain lineage."""

import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

import mlflow
from curation.catalog import Catalog, TrainingRun
from curation.cli import app
from curation.config import load_settings
from curation.continual import policy
from curation.continual.proactive import ContinualConfig
from curation.continual.triggers import Decision
from curation.data.contract import build_table
from curation.data.sources import Loaded
from curation.data.stream import add_chunk
from curation.training import records

FAST = [
    "--arch",
    "mlp",
    "--epochs",
    "2",
    "--passes",
    "4",
    "--min-samples",
    "1",
    "--device",
    "cpu",
    "--json",
    "--policy",
    "reactive",
]
QUIET, DRIFT = Decision(False, "drift", "quiet"), Decision(True, "drift", "drifted")


@pytest.fixture
def fast(home, monkeypatch):
    monkeypatch.setenv("CURATION_DVC", "false")
    return load_settings()


def blobs(c: int, shift: float = 0.0, n: int = 400) -> Loaded:
    """Chunk ``c``: 4 Gaussian classes in 12 features (ids of their own), every feature moved by ``shift``."""
    rng = np.random.default_rng(c)
    labels = rng.integers(0, 4, n)
    features = rng.normal(size=(n, 12)) + 1.5 * np.eye(4, 12)[labels] + shift
    split = np.where(np.arange(n) % 5 == 0, "test", "train")
    return Loaded(
        build_table(features, labels, sample_ids=c * 10_000 + np.arange(n), split=split), {"kind": "blobs", "c": c}, "s"
    )


def runs(settings):
    with Catalog(settings.catalog).session() as s:
        return s.query(TrainingRun).order_by(TrainingRun.id).all()


def retrain(*args, env=None):
    """`curation retrain s ...`: in this process, or in its own process when ``env`` sets a kill point."""
    if env is None:
        result = CliRunner().invoke(app, ["retrain", "s", *FAST, *args])
        return SimpleNamespace(returncode=result.exit_code, stderr=result.stderr)
    return subprocess.run(
        [sys.executable, "-m", "curation", "retrain", "s", *FAST, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def test_reactive_spends_saved_passes_after_a_drift_within_the_fixed_budget():
    reactive, fixed = ContinualConfig(passes=4, policy="reactive"), ContinualConfig(passes=4)
    assert (reactive.quiet, reactive.cap, fixed.policy) == (3, 8, "fixed")
    steps, fixed_total = [], 0
    for drifted in [False, False, False, True, True, False, True, False, False, True, True, True]:
        spent = policy.spend(reactive, policy.bank(steps), [DRIFT if drifted else QUIET], 0.5)
        assert spent.passes == (min(8, 4 + spent.bank) if drifted else 3) and spent.bank_after >= 0
        steps.append(spent.record())
        fixed_total += policy.spend(fixed, 0, [DRIFT if drifted else QUIET], 0.5).passes
        assert sum(s["passes"] for s in steps) <= fixed_total  # never ahead of the fixed policy's budget
    assert steps[3]["passes"] == 7 > steps[0]["passes"]  # the first drift spends what three quiet steps saved
    assert fixed_total == 4 * len(steps)


def test_signals_fire_on_a_shift_and_on_an_accuracy_drop(fast):
    import torch

    from curation.continual.data import StreamData, load_chunk
    from models import ModelSpec, build

    infos = [add_chunk(fast, "s", blobs(0)), add_chunk(fast, "s", blobs(1)), add_chunk(fast, "s", blobs(2, 3.0))]
    data = [load_chunk(fast, i, torch.device("cpu")) for i in infos]
    model = build("mlp", ModelSpec.of(infos[0]))
    quiet, _ = policy.signals(model, StreamData.of(data[:2]), 1, ContinualConfig(), None)
    shifted, accuracy = policy.signals(model, StreamData.of(data), 1, ContinualConfig(), 1.0)
    assert [d.fire for d in quiet] == [False]  # no reference accuracy yet: the KS test alone
    assert [(d.trigger, d.fire) for d in shifted] == [("drift", True), ("accuracy", True)]
    assert 0 <= accuracy < 0.9


def test_lineage_spends_more_after_a_drift_records_the_policy_and_resumes_after_a_kill(fast):
    add_chunk(fast, "s", blobs(0))
    assert retrain().returncode == 0  # the first model, from scratch: no policy decision
    add_chunk(fast, "s", blobs(1))
    assert retrain().returncode == 0
    add_chunk(fast, "s", blobs(2, shift=3.0))  # every feature moved: the KS test fires
    killed = retrain(env={"CURATION_KILL_AT": "retrain:before-finish"})
    assert killed.returncode == -9, killed.stderr
    done = retrain()
    assert done.returncode == 0, done.stderr

    first, quiet, dead, drifted = runs(fast)
    assert first.params["spend"] is None and dead.status == records.FAILED
    assert quiet.params["spend"]["drifted"] is False and quiet.params["spend"]["passes"] == 3  # banks 1 of 4
    assert drifted.params["spend"]["drifted"] is True and drifted.params["spend"]["passes"] == 5  # 4 + the bank
    assert dead.params["spend"] == drifted.params["spend"]  # the killed step decided the same: nothing hidden
    assert drifted.params["spend"]["bank"] == 1 and drifted.params["spend"]["bank_after"] == 0
    # more passes: more samples trained on the drifted chunk than on the quiet one of the same size
    assert drifted.ledger["backward_samples"] > 1.5 * quiet.ledger["backward_samples"]
    assert {r.params["continual"]["policy"] for r in (quiet, drifted)} == {"reactive"}
    mlflow.set_tracking_uri(fast.tracking)
    logged = mlflow.get_run(drifted.mlflow_run_id).data.params
    assert (logged["policy"], logged["passes_spent"], logged["pass_bank"]) == ("reactive", "5", "1")


def test_fixed_policy_spends_its_passes_and_bad_settings_are_one_line(fast):
    add_chunk(fast, "s", blobs(0))
    assert retrain("--policy", "fixed").returncode == 0  # the last --policy wins
    add_chunk(fast, "s", blobs(1))
    assert retrain("--policy", "fixed").returncode == 0
    assert runs(fast)[-1].params["spend"]["passes"] == 4 and runs(fast)[-1].params["continual"]["policy"] == "fixed"
    result = CliRunner().invoke(app, ["retrain", "s", *FAST, "--max-passes", "2"])
    assert result.exit_code == 2 and "max-passes" in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert CliRunner().invoke(app, ["retrain", "s", *FAST, "--policy", "eager"]).exit_code == 2  # typer's choices
    assert len(runs(fast)) == 2
