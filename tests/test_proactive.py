"""Proactive training and its baselines in one code path, over a stream of chunk versions."""

import numpy as np
import pytest
import torch

from curation.config import load_settings
from curation.continual.data import StreamData, load_chunk
from curation.continual.proactive import ContinualConfig, evaluate, train_step
from curation.data.stream import add_chunk, drifting_mnist1d
from curation.errors import CurationError
from curation.training.config import TrainConfig
from models import ModelSpec

CPU = torch.device("cpu")


@pytest.fixture
def stream(home):
    settings = load_settings(dvc=False)
    infos = [add_chunk(settings, "s", drifting_mnist1d(c, samples=200, seed=3)) for c in range(3)]
    return [load_chunk(settings, i, CPU) for i in infos], ModelSpec.of(infos[-1])


def test_stream_data_joins_train_rows_and_keeps_the_newest_test_split(stream):
    loaded, _ = stream
    data = StreamData.of(loaded)
    assert len(data.data.train) == sum(len(c.train) for c in loaded)
    assert (np.diff(data.data.train.sample_ids) > 0).all()
    for chunk, rows in zip(loaded, data.chunk_rows):
        assert np.array_equal(data.data.train.sample_ids[rows], chunk.train.sample_ids)
        assert torch.equal(data.data.train.features[torch.from_numpy(rows)], chunk.train.features)
    assert data.data.test is loaded[-1].test and data.data.version_id == loaded[-1].version_id
    with pytest.raises(CurationError, match="is in two chunks"):
        StreamData.of([loaded[0], loaded[0]])


def test_proactive_step_continues_on_mixed_batches_and_books_every_sample(stream):
    loaded, spec = stream
    train = TrainConfig(arch="mlp", epochs=1, batch_size=64, seed=1, device="cpu")
    first = train_step(StreamData.of(loaded[:1]), 1, None, ContinualConfig(), train, spec)
    assert first.from_scratch and first.ledger.backward_samples == len(loaded[0].train)

    data = StreamData.of(loaded)
    before = {k: v.clone() for k, v in first.model.state_dict().items()}
    config = ContinualConfig(new_per_batch=16, passes=2)
    step = train_step(data, 1, first.model, config, train, spec, step=2, optimizer=first.optimizer)
    assert not step.from_scratch and step.model is first.model
    assert any(not torch.equal(before[k], v) for k, v in step.model.state_dict().items())
    new = len(loaded[-1].train)
    batches = -(-new // 16)  # each batch: 16 new rows (fewer in the last) + 48 history rows
    assert step.ledger.backward_samples == config.passes * (new + batches * 48)
    assert step.ledger.forward_samples == step.ledger.backward_samples and step.ledger.train_seconds > 0
    assert step.accuracy == evaluate(step.model, data, train)


def test_full_and_periodic_retrain_from_scratch_on_everything_seen(stream):
    loaded, spec = stream
    data = StreamData.of(loaded)
    train = TrainConfig(arch="mlp", epochs=2, batch_size=64, device="cpu")
    deployed = train_step(StreamData.of(loaded[:1]), 1, None, ContinualConfig(), train, spec).model
    for mode in ("full", "periodic"):
        step = train_step(data, 1, deployed, ContinualConfig(mode=mode), train, spec)
        assert step.from_scratch and step.model is not deployed
        assert step.ledger.backward_samples == 2 * len(data.data.train)
    periodic = ContinualConfig(mode="periodic", every=3)
    assert [periodic.due(n) for n in (1, 2, 3)] == [False, False, True]
    assert ContinualConfig().due(1)
    with pytest.raises(CurationError, match="bad retraining setting 'strategy'"):
        ContinualConfig.make(strategy="newest")
    with pytest.raises(CurationError, match="t = 65 new examples per batch of 64"):
        train_step(data, 1, deployed, ContinualConfig(new_per_batch=65), train, spec)


def test_proactive_batch_size_and_the_trainers_public_batch_step(stream):
    """``ContinualConfig.batch_size`` sets B apart from the training batch; ``Trainer.train_batches`` trains
    exactly the given rows at the given learning rates and refuses rows outside the train split."""
    from curation.training.trainer import Trainer
    from models import build

    loaded, spec = stream
    data = StreamData.of(loaded)
    train = TrainConfig(arch="mlp", epochs=1, batch_size=64, seed=1, device="cpu")
    first = train_step(StreamData.of(loaded[:1]), 1, None, ContinualConfig(), train, spec)
    step = train_step(data, 1, first.model, ContinualConfig(new_per_batch=16, batch_size=32, passes=1), train, spec)
    new = len(loaded[-1].train)
    assert step.ledger.backward_samples == new + -(-new // 16) * 16  # 16 new + 16 history per batch of 32

    trainer = Trainer(build("mlp", spec), data.data, train)
    rates = []
    stats = trainer.train_batches([np.arange(5), np.arange(5, 12)], lambda i, n: rates.append((i, n)) or 0.1)
    assert rates == [(0, 2), (1, 2)] and trainer.optimizer.param_groups[0]["lr"] == 0.1
    assert stats["trained"] == 12 and trainer.ledger.backward_samples == 12 and trainer.counts[:12].all()
    with pytest.raises(CurationError, match="outside the train split"):
        trainer.train_batches([np.array([len(data.data.train)])], lambda i, n: 0.1)


def test_the_default_share_of_new_rows_follows_the_batch_and_every_entry_point_has_the_same_defaults(stream):
    """t defaults to 3/4 of B (resolved into what a run records and trains with); ``curation retrain`` and the
    retrain flow default to ContinualConfig's values, so the benchmark's defaults are the pipeline's."""
    import inspect

    from curation import cli
    from flows.retrain import retrain

    assert ContinualConfig().resolve(128).new_per_batch == 96
    assert ContinualConfig().resolve(64).model_dump(include={"batch_size", "new_per_batch"}) == {
        "batch_size": 64,
        "new_per_batch": 48,
    }
    assert ContinualConfig(new_per_batch=16, batch_size=32).resolve(128).new_per_batch == 16
    assert ContinualConfig().resolve(1).new_per_batch == 1

    loaded, spec = stream
    train = TrainConfig(arch="mlp", epochs=1, batch_size=64, seed=1, device="cpu")
    first = train_step(StreamData.of(loaded[:1]), 1, None, ContinualConfig(), train, spec)
    step = train_step(StreamData.of(loaded), 1, first.model, ContinualConfig(passes=1), train, spec)
    new = len(loaded[-1].train)
    assert step.ledger.backward_samples == new + -(-new // 48) * 16  # 48 new + 16 history per batch of 64

    defaults = ContinualConfig()
    options = {k: p.default.default for k, p in inspect.signature(cli.retrain).parameters.items()}
    flow = {k: p.default for k, p in inspect.signature(retrain.fn).parameters.items()}
    for key in ("mode", "new_per_batch", "strategy", "passes", "policy", "every", "min_samples"):
        assert options[key] == flow[key] == getattr(defaults, key), key
