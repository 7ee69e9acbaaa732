"""The retrain lineage: idempotent over chunk versions, lineage and the champion alias, sparse deployment,
crashes, bad input. The flow runs on Prefect's real temporary server; the CLI as a user runs it."""

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
import torch
from typer.testing import CliRunner

from curation.catalog import Catalog, ModelVersion, ShippedUpdate, TrainingRun
from curation.cli import app
from curation.config import load_settings
from curation.continual.retrain import ALIAS, deployed_replica
from curation.data.contract import build_table
from curation.data.sources import Loaded
from curation.data.stream import add_chunk, drifting_mnist1d
from curation.errors import CurationError
from curation.sparse_updates import SparseUpdate, Sparsifier
from curation.tracking import Tracker
from curation.training.checkpoint import load_checkpoint

FAST = ["--arch", "mlp", "--epochs", "1", "--passes", "1", "--min-samples", "1", "--device", "cpu"]


@pytest.fixture
def fast(home, monkeypatch):
    monkeypatch.setenv("CURATION_DVC", "false")
    return load_settings()


def chunk(settings, c):
    return add_chunk(settings, "stream", drifting_mnist1d(c, samples=240, seed=2))


def rows(settings, table):
    with Catalog(settings.catalog).session() as s:
        return s.query(table).order_by(table.id).all()


def cli(*args):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def shell(home, *args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "curation", *args],
        cwd=home,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def alias(settings):
    return Tracker(settings, "stream").alias("stream-proactive", ALIAS)


def test_flow_trains_each_chunk_once_with_lineage_alias_and_sparse_update(prefect_server, fast):
    from flows.retrain import retrain

    params = dict(dataset="stream", arch="mlp", epochs=1, passes=1, min_samples=1, device="cpu")
    first_chunk = chunk(fast, 0)
    first = retrain(**params)
    assert first["status"] == "trained" and first["new_versions"] == [first_chunk.id] and first["promoted"]
    again = retrain(**params)
    assert again["status"] == "up-to-date" and again["new_versions"] == [] and again["run_id"] is None
    assert len(rows(fast, TrainingRun)) == 1

    second_chunk = chunk(fast, 1)
    second = retrain(**params)
    assert second["status"] == "trained" and second["new_versions"] == [second_chunk.id]
    assert retrain(**params)["status"] == "up-to-date"
    runs = rows(fast, TrainingRun)
    assert [r.params["chunks"] for r in runs] == [[first_chunk.id], [second_chunk.id]]
    assert runs[1].params["history"] == [first_chunk.id] and runs[1].ledger["backward_samples"] > 0
    assert {d["trigger"] for d in second["decisions"]} == {"amount", "time", "drift", "accuracy"}

    models = rows(fast, ModelVersion)
    assert [m.parent_id for m in models] == [None, models[0].id]
    assert second["promoted"] == (second["accuracy"] >= second["champion_accuracy"])
    champion = models[1] if second["promoted"] else models[0]
    assert alias(fast) == champion.registry_version == str(1 + second["promoted"])
    deployments = rows(fast, ShippedUpdate)
    if not second["promoted"]:
        assert deployments == [] and second["shipped"] is None
        return
    assert {d.model_version_id for d in deployments} == {models[1].id}  # its per-batch updates (sparse training)
    assert second["shipped"]["updates"] == len(deployments) == deployed_replica(fast, "stream").sequence


def champion_scores(monkeypatch, value):
    """Make the champion score ``value`` on the new test chunk: 0 promotes the new model, 1 keeps the champion
    (the lineage's own evaluations report it too)."""
    import curation.continual.retrain as retrain_module

    monkeypatch.setattr(retrain_module, "evaluate", lambda model, stream, train: value)


def test_sparse_training_ships_promoted_steps_and_carries_the_residual(fast, monkeypatch):
    import curation.continual.retrain as retrain_module
    from curation.data.stream import chunks
    from models import ModelSpec

    chunk(fast, 0)
    assert cli("retrain", "stream", *FAST).exit_code == 0  # the base, deployed in full
    for c, promote in ((1, True), (2, False), (3, True)):
        chunk(fast, c)
        champion_scores(monkeypatch, 0.0 if promote else 1.0)
        assert json.loads(cli("retrain", "stream", *FAST, "--json").stdout)["promoted"] == promote
    base, first, rejected, second = rows(fast, ModelVersion)
    staged = {m.id: load_checkpoint(fast.home / m.path) for m in (first, rejected, second)}
    n1, n2 = len(staged[first.id]["updates"]), len(staged[second.id]["updates"])
    deployments = rows(fast, ShippedUpdate)
    assert n1 > 1 and n2 > 1 and [d.sequence for d in deployments] == list(range(1, n1 + n2 + 1))
    assert [d.model_version_id for d in deployments] == [first.id] * n1 + [second.id] * n2
    assert all(
        d.base_model_version_id == base.id and d.bytes == (fast.home / d.path).stat().st_size < d.dense_bytes / 100
        for d in deployments
    )
    # the rejected model's updates were staged after the first's and never shipped
    assert (
        SparseUpdate.from_bytes((fast.home / staged[rejected.id]["updates"][0]["path"]).read_bytes()).sequence == n1 + 1
    )
    replica, checkpoint = deployed_replica(fast, "stream"), staged[second.id]
    assert replica.sequence == n1 + n2
    assert all(torch.equal(checkpoint["model"][k], replica.state[k]) for k in replica.state)  # bit for bit
    residual = max(float(r.abs().max()) for r in checkpoint["residual"].values())
    assert residual == pytest.approx(deployments[-1].gap) and residual > 0  # rho = 1e-3 leaves a residual
    # the next step starts from the replica and carries the champion's residual, nothing less, nothing more
    model = retrain_module._model("mlp", ModelSpec.of(chunks(fast, "stream")[-1]), checkpoint["model"])
    sender = retrain_module._SparseTraining.of(replica, model, checkpoint["residual"], 1e-3).sender
    assert all(torch.equal(sender.residual[k], checkpoint["residual"][k]) for k in checkpoint["residual"])
    assert all(torch.equal(model.state_dict()[k], replica.state[k]) for k in replica.state)


def test_ship_model_sends_one_update_per_promoted_model(fast, monkeypatch):
    chunk(fast, 0)
    assert cli("retrain", "stream", *FAST, "--ship", "model").exit_code == 0
    with Catalog(fast.catalog).session() as s:  # a lineage from before --ship existed ships per model
        [run] = s.query(TrainingRun).all()
        run.params = {k: v for k, v in run.params.items() if k != "ship"}
    chunk(fast, 1)
    champion_scores(monkeypatch, 0.0)
    second = json.loads(cli("retrain", "stream", *FAST, "--json").stdout)
    models = rows(fast, ModelVersion)
    assert second["promoted"] and rows(fast, TrainingRun)[-1].params["ship"] == "model"
    [shipped] = rows(fast, ShippedUpdate)
    assert (shipped.model_version_id, shipped.base_model_version_id, shipped.sequence) == (
        models[1].id,
        models[0].id,
        1,
    )
    assert shipped.bytes == (fast.home / shipped.path).stat().st_size < shipped.dense_bytes
    assert second["shipped"]["updates"] == 1
    replica = deployed_replica(fast, "stream")
    trained = load_checkpoint(fast.home / models[1].path)["model"]
    gap = max(float((trained[k] - replica.state[k]).abs().max()) for k in trained if trained[k].is_floating_point())
    assert gap == pytest.approx(shipped.gap) and gap > 0  # rho = 1e-3 leaves a residual
    assert replica.sequence == 1


def test_crashes_keep_the_champion_and_the_next_run_completes_the_work(fast):
    chunk(fast, 0)
    assert cli("retrain", "stream", *FAST, "--json").exit_code == 0
    new = chunk(fast, 1)
    for point in ("train:epoch-0:batch-1", "retrain:before-finish"):  # mid-training, before the commit
        killed = shell(fast.home, "retrain", "stream", *FAST, env={"CURATION_KILL_AT": point})
        assert killed.returncode == -9, killed.stderr
        assert [m.metrics["promoted"] for m in rows(fast, ModelVersion)] == [True] and alias(fast) == "1"
        assert rows(fast, TrainingRun)[-1].status == "RUNNING"
    # the next run trains (and is killed after its commit, before the alias and the sparse update) ...
    killed = shell(fast.home, "retrain", "stream", *FAST, env={"CURATION_KILL_AT": "retrain:before-publish"})
    assert killed.returncode == -9, killed.stderr
    assert [r.status for r in rows(fast, TrainingRun)] == ["FINISHED", "FAILED", "FAILED", "FINISHED"]
    assert rows(fast, TrainingRun)[-1].params["chunks"] == [new.id]
    assert alias(fast) == "1" and rows(fast, ShippedUpdate) == []
    # ... and the one after completes the publishing without training again
    outcome = json.loads(cli("retrain", "stream", *FAST, "--json").stdout)
    assert outcome["status"] == "up-to-date" and len(rows(fast, TrainingRun)) == 4
    latest = rows(fast, ModelVersion)[-1]
    assert alias(fast) == (latest.registry_version if latest.metrics["promoted"] else "1")
    shipped_models = {d.model_version_id for d in rows(fast, ShippedUpdate)}
    assert shipped_models == ({latest.id} if latest.metrics["promoted"] else set())
    assert (outcome["shipped"] is not None) == latest.metrics["promoted"]
    if latest.metrics["promoted"]:  # the staged updates of the killed call, shipped in sequence
        replica, trained = deployed_replica(fast, "stream"), load_checkpoint(fast.home / latest.path)["model"]
        assert [d.sequence for d in rows(fast, ShippedUpdate)] == list(range(1, replica.sequence + 1))
        assert all(torch.equal(trained[k], replica.state[k]) for k in replica.state)


def test_bad_input_is_one_line_and_promotes_nothing(fast, monkeypatch):
    chunk(fast, 0)
    assert cli("retrain", "stream", *FAST).exit_code == 0
    cases = {
        ("nosuch",): "data set 'nosuch' has no versions",
        ("stream", "--new-per-batch", "0"): "bad retraining setting 'new_per_batch'",
        ("stream", "--rho", "0"): "rho 0.0 is outside (0, 1]",
        ("stream", "--lineage", "../x"): "bad data set name",
        ("stream", "--mode", "full", "--ship", "batch"): "--ship batch trains the deployed model sparsely",
        ("stream", *FAST, "--ship", "model"): "lineage 'proactive' ships per batch, not per model",
        ("stream", *FAST, "--arch", "cnn1d"): "lineage 'proactive' trains mlp, not cnn1d",
    }
    for args, expected in cases.items():
        result = cli("retrain", *args)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and expected in lines[0], (args, result.stderr)
    alien = Loaded(build_table(np.ones((5, 40)), np.full(5, 11), split=["train"] * 5, chunk=np.ones(5)), {}, "x")
    narrow = Loaded(build_table(np.ones((5, 3)), np.zeros(5, int)), {}, "x")
    empty = Loaded(pa.table({"sample_id": pa.array([], pa.int64())}), {}, "x")
    for refused, expected in (
        (alien, "classes"),
        (narrow, "differs"),
        (empty, "empty"),
        (drifting_mnist1d(0, samples=240, seed=2), "already registered"),
    ):
        with pytest.raises(CurationError, match=expected):
            add_chunk(fast, "stream", refused)
    assert json.loads(cli("retrain", "stream", *FAST, "--json").stdout)["status"] == "up-to-date"

    chunk(fast, 1)
    champion_scores(monkeypatch, 0.0)
    assert cli("retrain", "stream", *FAST).exit_code == 0
    [first, second] = rows(fast, ModelVersion)
    assert second.metrics["promoted"]
    shipped = rows(fast, ShippedUpdate)[0]
    foreign = Sparsifier(1e-3, "999").start(load_checkpoint(fast.home / first.path)["model"])
    (fast.home / shipped.path).write_bytes(
        foreign.update(load_checkpoint(fast.home / second.path)["model"], "999").to_bytes()
    )
    chunk(fast, 2)
    result = cli("retrain", "stream", *FAST)
    assert result.exit_code == 2 and "is for base '999'" in result.stderr
    assert result.stderr.count("\n") == 1
    assert len(rows(fast, ModelVersion)) == 2 and alias(fast) == second.registry_version


def test_retrain_deployment_starts_on_the_new_version_event(prefect_server):
    import anyio
    from prefect.client.orchestration import get_client

    from flows.deployments import deployments
    from flows.events import VERSION_ADDED

    [retrain] = [d for d in deployments("stream") if d.name == "retrain"]
    assert [t.expect for t in retrain.triggers] == [{VERSION_ADDED}]
    deployment_id = retrain.apply()

    async def read():
        async with get_client() as client:
            return await client.read_deployment(deployment_id)

    found = anyio.run(read)
    assert found.schedules == []  # no polling: the ingest flow's event starts it
    assert found.parameters == {"dataset": "stream"}
