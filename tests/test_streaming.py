"""Splits streamed from disk: every epoch trains on exactly the plan's multiset, evaluation and scores match
the in-memory path, a resumed run replays bit for bit, and worker processes start cleanly beside threads."""

import subprocess
import sys
import threading

import numpy as np
import psutil
import pyarrow as pa
import pytest
import torch
from crash import CrashAt
from typer.testing import CliRunner

from curation.cli import app
from curation.config import load_settings
from curation.data import sources, store
from curation.data.versions import add_version, open_version
from curation.errors import CurationError
from curation.metrics.coverage import plan_statistics
from curation.scoring.scores import score_batches
from curation.selection.plans import FullPlan
from curation.selection.sampling import SampledPlan
from curation.training import TrainConfig, Trainer, TrainingData, streaming
from curation.training.streaming import StreamedSplit
from models import ModelSpec, build

runner = CliRunner()


@pytest.fixture(scope="module")
def version(tmp_path_factory):
    """600 MNIST-1D samples in row groups of 64 rows: an epoch spans many groups and pieces."""
    settings = load_settings(home=tmp_path_factory.mktemp("streaming"), dvc=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store, "ROW_GROUP_SIZE", 64)
        info = add_version(settings, sources.mnist1d(samples=600))
    return settings, info


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch):
    """Pieces of 24 rows mixed 3 at a time: batches span pieces, buffers and row groups."""
    monkeypatch.setattr(streaming, "PIECE_ROWS", 24)
    monkeypatch.setattr(streaming, "BUFFER_PIECES", 3)


def load(version, data_path, workers=0) -> TrainingData:
    settings, info = version
    _, reader = open_version(settings, info.id)
    return TrainingData.load(reader, info.id, info.feature_shape, torch.device("cpu"), workers, data_path)


def make(data, epochs=3, **options) -> Trainer:
    extra = {k: options.pop(k) for k in ("checkpoint", "callbacks", "selector") if k in options}
    torch.manual_seed(0)
    model = build("cnn1d", ModelSpec(40, data.feature_shape, 10))
    return Trainer(model, data, TrainConfig(arch="cnn1d", epochs=epochs, batch_size=32, **options), **extra)


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_the_split_is_streamed_when_asked_and_held_in_memory_by_default(version):
    streamed, held = load(version, "stream"), load(version, "auto")
    assert streamed.streamed and isinstance(streamed.train, StreamedSplit) and not held.streamed
    assert len(streamed.reader.group_starts) - 1 == 10  # 600 rows in groups of 64
    assert np.array_equal(streamed.train.sample_ids, held.train.sample_ids)
    rows = np.array([5, 0, 5, 311])  # random access, repeats kept
    for a, b in zip(streamed.train.batch(rows), held.train.batch(rows)):
        assert torch.equal(a, b)


def test_auto_streams_and_reads_in_fewer_processes_when_little_memory_is_left(version, monkeypatch):
    """Under a tight limit (a container's), auto keeps ``RUN_RESERVE`` for the run and a worker only where one
    fits: a split that needs 1% of what is available is still streamed when the rest of the run needs it."""
    from curation.training import data as training_data

    roomy = training_data.RUN_RESERVE + 2 * training_data.WORKER_BYTES
    monkeypatch.setattr(training_data, "available_bytes", lambda: roomy)
    held = load(version, "auto", workers=2)
    assert not held.streamed
    monkeypatch.setattr(training_data, "available_bytes", lambda: roomy - training_data.WORKER_BYTES // 2)
    streamed = load(version, "stream", workers=2)
    assert streamed.train.workers == 1  # of the 2 asked for: one fits beside the reserve
    monkeypatch.setattr(training_data, "available_bytes", lambda: training_data.RUN_RESERVE)
    tight = load(version, "auto", workers=2)
    assert tight.placement == {"train": "stream", "test": "stream", "stream_readers": 0}
    assert held.placement == {"train": "memory", "test": "memory", "stream_readers": 0}
    assert np.array_equal(tight.train.sample_ids, held.train.sample_ids)


def test_training_ranks_share_the_available_memory(version, monkeypatch):
    """``--nproc`` ranks start together on one machine: each plans with its share, not with all of it."""
    from curation.training import data as training_data

    roomy = training_data.RUN_RESERVE + 2 * training_data.WORKER_BYTES
    monkeypatch.setattr(training_data, "available_bytes", lambda: roomy)
    assert load(version, "stream", workers=2).train.workers == 2
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert load(version, "stream", workers=2).train.workers == 0  # half of it holds no reader beside the reserve


def test_every_epoch_trains_on_exactly_the_plans_multiset(version):
    data = load(version, "stream")
    n = len(data.train)
    soft = SampledPlan(data.version_id, data.train.sample_ids, "soft", 0.3, seed=4)  # with replacement
    seen = []
    original = data.train.batches

    def spy(rows, weights, size, seed):
        for batch in original(rows, weights, size, seed):
            assert len(batch[0]) <= size and len(batch[2]) == len(batch[0]) == len(batch[3])
            seen.append(batch[0])
            yield batch

    data.train.batches = spy
    result = make(data, epochs=4).fit(soft)
    exact = plan_statistics("soft", n, 0.3, 4, seed=4)["occupancy"]
    assert result.occupancy[: len(exact)] == exact and not any(result.occupancy[len(exact) :])
    plan_rows = np.sort(np.concatenate([data.train_rows(soft.ids(e)) for e in range(4)]))
    assert np.array_equal(np.sort(np.concatenate(seen)), plan_rows)


def test_labels_travel_with_their_rows(version):
    streamed, held = load(version, "stream"), load(version, "memory")
    rows = np.arange(len(held.train))
    for batch_rows, _, x, y in streamed.train.batches(rows, None, 50, [0, 1]):
        hx, hy = held.train.batch(batch_rows)
        assert torch.equal(x, hx) and torch.equal(y, hy)


def test_weights_follow_their_rows(version):
    data = load(version, "stream")
    rows = np.arange(len(data.train))
    weights = rows.astype(np.float32) / 7
    for batch_rows, batch_weights, _, _ in data.train.batches(rows, weights, 32, [3, 0]):
        assert np.array_equal(batch_weights, batch_rows.astype(np.float32) / 7)


def test_a_pass_started_during_another_ends_it_loudly(version):
    data = load(version, "stream")
    epoch = data.train.batches(np.arange(len(data.train)), None, 32, [0, 0])
    next(epoch)
    assert sum(len(rows) for rows, _, _ in data.train.in_order(100)) == len(data.train)  # complete
    with pytest.raises(RuntimeError, match="ended by another"):
        list(epoch)


def test_evaluation_and_scores_match_the_in_memory_path_bit_for_bit(version):
    held, streamed = load(version, "memory"), load(version, "stream")
    trainer = make(held, epochs=1)
    trainer.fit(FullPlan(held.version_id, held.train.sample_ids))
    other = Trainer(trainer.model, streamed, trainer.config)
    assert other.evaluate() == trainer.evaluate()  # the same batches: cut at row groups on both paths
    a = pa.Table.from_batches(list(score_batches(trainer.model, held.train)))
    b = pa.Table.from_batches(list(score_batches(trainer.model, streamed.train)))
    assert a.equals(b)


def test_worker_processes_beside_a_running_thread_train_as_this_process_does(version):
    stop = threading.Event()
    busy = threading.Thread(target=stop.wait, daemon=True)  # like a Prefect server or MLflow's threads
    busy.start()
    try:
        in_process, in_workers = load(version, "stream", workers=0), load(version, "stream", workers=2)
        plan = FullPlan(in_process.version_id, in_process.train.sample_ids)
        a = make(in_process, epochs=2).fit(plan)
        b = make(in_workers, epochs=2).fit(plan)
        in_workers.close()
    finally:
        stop.set()
    assert same_weights(a.model, b.model)
    assert [r["accuracy"] for r in a.history] == [r["accuracy"] for r in b.history]


def test_reader_processes_end_when_the_process_they_read_for_is_killed(version):
    """kill -9 (or the kernel's out-of-memory killer) leaves no reader behind: under forkserver a worker's parent
    is the fork server, which the workers themselves keep alive, so they must watch the reading process."""
    settings, info = version
    script = (
        "import sys, time, numpy as np, torch\n"
        "from curation.config import load_settings\n"
        "from curation.data.versions import open_version\n"
        "from curation.training import TrainingData\n"
        f"settings = load_settings(home={str(settings.home)!r}, dvc=False)\n"
        f"_, reader = open_version(settings, {info.id})\n"
        f"data = TrainingData.load(reader, {info.id}, {list(info.feature_shape)}, torch.device('cpu'), 2, 'stream')\n"
        "next(data.train.batches(np.arange(len(data.train)), None, 8, [0]))\n"
        "print('reading', flush=True)\n"
        "time.sleep(600)\n"
    )
    reading = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert reading.stdout.readline().strip() == "reading"
        left = psutil.Process(reading.pid).children(recursive=True)  # the fork server, its workers, a tracker
        assert sum(p.name() == "pt_data_worker" for p in left) == 2
        reading.kill()
        reading.wait()
        _, alive = psutil.wait_procs(left, timeout=20)
    finally:
        reading.kill()
    for p in alive:
        p.kill()
    assert not alive, f"{len(alive)} of the reading process's {len(left)} helper processes outlived it"


def test_a_killed_streamed_run_resumes_bit_for_bit(version, tmp_path):
    data = load(version, "stream")
    plan = SampledPlan(data.version_id, data.train.sample_ids, "soft", 0.5, seed=2)
    reference = make(data).fit(plan)
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(RuntimeError, match="simulated crash"):
        make(data, checkpoint=checkpoint, callbacks=[CrashAt(1, 3)]).fit(plan)
    resumed = make(data, checkpoint=checkpoint).fit(plan, resume=True)
    assert same_weights(reference.model, resumed.model)
    assert [r["accuracy"] for r in reference.history] == [r["accuracy"] for r in resumed.history]
    held = make(load(version, "memory"), checkpoint=checkpoint)
    with pytest.raises(CurationError, match="different streamed"):
        held.resume(plan)  # the other data path visits the rows in another order


def test_a_budgeted_streamed_run_stops_at_its_budget(version):
    data = load(version, "stream")
    result = make(data, epochs=2, budget=0.3).fit(FullPlan(data.version_id, data.train.sample_ids))
    assert result.ledger.backward_samples == int(np.ceil(0.3 * 2 * len(data.train)))


def test_an_online_selector_on_a_streamed_split_is_a_one_line_error(version):
    data = load(version, "stream")

    class Everything:  # an online selector: it reads candidate rows at random
        def start(self, n):
            pass

    with pytest.raises(CurationError, match="--data-path memory"):
        make(data, selector=Everything())


def test_train_and_score_stream_from_the_cli(version, monkeypatch):
    settings, info = version
    monkeypatch.setenv("CURATION_HOME", str(settings.home))
    monkeypatch.setenv("CURATION_DVC", "false")
    common = ["--arch", "cnn1d", "--epochs", "1", "--data-path", "stream", "--workers", "1"]
    trained = runner.invoke(app, ["train", str(info.id), *common, "--batch-size", "32", "--json"])
    assert trained.exit_code == 0, trained.output
    scored = runner.invoke(app, ["score", str(info.id), *common, "--json"])
    assert scored.exit_code == 0, scored.output
    bad = runner.invoke(app, ["train", str(info.id), "--data-path", "disk"])
    assert bad.exit_code == 2 and "disk" in bad.stderr


def test_a_streamed_run_never_holds_every_id_of_the_version(version):
    """A streamed split knows its rows' places in the file: training, evaluation and reading rows by position never
    load the version's whole id column (8 bytes a row of every split)."""
    data = load(version, "stream")
    make(data, epochs=1).fit(FullPlan(data.version_id, data.train.sample_ids))
    x, y = data.test.batch(np.arange(4))
    assert data.reader._ids is None and x.shape[0] == len(y) == 4
    assert data.train.file_rows.dtype == np.int32 and data.train._loader[1].pieces == []  # a finished pass: none held
