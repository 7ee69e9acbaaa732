"""Runs in MLflow and the catalog, read back through MlflowClient: side by side, failed, resumed."""

import json
from pathlib import Path

import pytest

from curation.catalog import Catalog, ModelVersion, TrainingRun
from curation.config import load_settings
from curation.data import sources
from curation.data.store import file_md5
from curation.data.versions import add_version, open_version
from curation.selection.plans import StaticPlan
from curation.training import Callback, TrainConfig, train_version
from curation.training.records import FAILED, FINISHED
from mlflow import MlflowClient

CONFIG = TrainConfig(arch="cnn1d", epochs=3, batch_size=32)


@pytest.fixture
def project(home):
    settings = load_settings(dvc=False)
    return settings, add_version(settings, sources.mnist1d(samples=400))


def catalog_runs(settings) -> list[TrainingRun]:
    with Catalog(settings.catalog).session() as s:
        return list(s.query(TrainingRun).order_by(TrainingRun.id))


def test_two_plans_side_by_side_in_mlflow(project):
    settings, info = project
    full = train_version(settings, info.ref, CONFIG)
    _, reader = open_version(settings, info.id)
    train_ids = reader.read(["sample_id"], split="train").column("sample_id").to_numpy()
    ids = train_ids[::2]
    half = train_version(
        settings, info.ref, CONFIG, StaticPlan(info.id, ids, method="every-other"), baseline=full.run_id
    )

    client = MlflowClient(settings.tracking)
    experiment = client.get_experiment_by_name("mnist1d")
    assert experiment.artifact_location == (settings.home / "mlflow" / "artifacts").as_uri()
    runs = {r.info.run_id: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {full.mlflow_run_id, half.mlflow_run_id}
    a, b = runs[full.mlflow_run_id], runs[half.mlflow_run_id]
    assert a.info.status == b.info.status == "FINISHED"
    assert (
        a.data.params.keys()
        == b.data.params.keys()
        >= {"arch", "epochs", "lr", "batch_size", "seed", "plan_method", "plan_digest", "flops_per_sample"}
    )
    assert (a.data.params["plan_method"], b.data.params["plan_method"]) == ("full", "every-other")
    assert a.data.tags["curation.run_id"] == str(full.run_id) and b.data.tags["curation.version_id"] == str(info.id)

    n = len(train_ids)
    for run, per_epoch in ((a, n), (b, len(ids))):
        history = {
            k: client.get_metric_history(run.info.run_id, k)
            for k in ("accuracy", "backward_samples", "coverage", "flops", "seconds")
        }
        assert [m.step for m in history["accuracy"]] == [1, 2, 3]  # step = epoch, each logged once
        assert [m.value for m in history["backward_samples"]] == [per_epoch, 2 * per_epoch, 3 * per_epoch]
        assert history["coverage"][-1].value == pytest.approx(per_epoch / n)
        flops_per_sample = float(run.data.params["flops_per_sample"])
        assert history["flops"][-1].value == pytest.approx(3 * 3 * per_epoch * flops_per_sample)
        dataset = run.inputs.dataset_inputs[0].dataset
        assert (dataset.name, dataset.digest) == ("mnist1d", info.content_hash)
        artifacts = {f.path for f in client.list_artifacts(run.info.run_id)}
        assert {"accuracy_vs_compute.png", "ledger.json"} <= artifacts

    # The half-data run is compared with the full run: speedup = full's compute to target / its own.
    target = 0.99 * max(r["accuracy"] for r in full.history)
    assert half.summary["target_accuracy"] == pytest.approx(target)
    reached = [r["flops"] for r in half.history if r["accuracy"] >= target]
    base = next(r["flops"] for r in full.history if r["accuracy"] >= target)
    assert half.summary["speedup_compute"] == (pytest.approx(base / reached[0]) if reached else None)
    assert b.data.metrics["best_accuracy"] == half.summary["best_accuracy"]

    # The catalog keeps each MLflow run id, the final ledger, the history, and the model with its md5.
    rows = catalog_runs(settings)
    assert [(r.status, r.mlflow_run_id) for r in rows] == [
        (FINISHED, full.mlflow_run_id),
        (FINISHED, half.mlflow_run_id),
    ]
    ledger = json.loads(
        Path(client.download_artifacts(half.mlflow_run_id, "ledger.json", str(settings.home))).read_text()
    )
    assert rows[1].ledger == ledger == half.ledger
    assert rows[1].metrics["history"] == half.history
    with Catalog(settings.catalog).session() as s:
        models = list(s.query(ModelVersion).order_by(ModelVersion.id))
    assert [(m.run_id, m.name, m.registry_version) for m in models] == [
        (full.run_id, "mnist1d-cnn1d", "1"),
        (half.run_id, "mnist1d-cnn1d", "2"),
    ]
    assert models[1].content_hash == file_md5(settings.home / models[1].path)
    registered = client.get_model_version("mnist1d-cnn1d", "2")
    assert registered.run_id == half.mlflow_run_id


class Explode(Callback):
    def on_epoch_end(self, record):
        if record["epoch"] == 2:
            raise RuntimeError("disk on fire")


def test_a_failed_run_is_failed_everywhere_and_resumes_to_the_same_result(project):
    settings, info = project
    with pytest.raises(RuntimeError, match="disk on fire"):
        train_version(settings, info.ref, CONFIG, callbacks=[Explode()])
    [row] = catalog_runs(settings)
    client = MlflowClient(settings.tracking)
    assert row.status == FAILED and client.get_run(row.mlflow_run_id).info.status == "FAILED"
    with Catalog(settings.catalog).session() as s:
        assert s.query(ModelVersion).count() == 0

    resumed = train_version(settings, info.ref, CONFIG, resume=True)
    assert (resumed.run_id, resumed.mlflow_run_id) == (row.id, row.mlflow_run_id)
    assert client.get_run(row.mlflow_run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(row.mlflow_run_id, "accuracy")] == [1, 2, 3]

    fresh = train_version(settings, info.ref, CONFIG)
    strip = lambda h: [{k: v for k, v in r.items() if "seconds" not in k} for r in h]  # noqa: E731
    assert strip(fresh.history) == strip(resumed.history)
    assert [r.status for r in catalog_runs(settings)] == [FINISHED, FINISHED]


def test_parent_run_nests_the_runs_started_inside_its_block(home):
    from curation.tracking import OWNER_TAG, Tracker

    settings = load_settings(dvc=False)
    tracker = Tracker(settings, "nesting")
    with tracker.parent("comparison", tags={"curation.kind": "compare"}) as parent:
        for name in ("first", "second"):
            with tracker.run(name=name):
                pass
    with tracker.run(name="after"):
        pass
    assert parent.children() == ["first", "second"]
    client = MlflowClient(settings.tracking)
    run = client.get_run(parent.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["curation.kind"] == "compare"
    assert OWNER_TAG in run.data.tags  # a killed comparison's parent is ended by end_dead_runs
    with pytest.raises(RuntimeError), tracker.parent("broken") as broken:
        raise RuntimeError("boom")
    assert client.get_run(broken.run_id).info.status == "FAILED"
    with tracker.run(name="alone") as alone:
        pass
    assert "mlflow.parentRunId" not in client.get_run(alone.run_id).data.tags
