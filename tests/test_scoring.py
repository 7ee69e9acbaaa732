"""Scoring with a proxy model: a score set aligned with the train split, its cost carried into plans."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from curation.cli import app
from curation.data.sources import mnist1d
from curation.data.versions import add_version
from curation.errors import CurationError
from curation.scoring.run import score_version
from curation.selection.run import select_plan


@pytest.fixture
def quick(home):
    from curation.config import load_settings

    settings = load_settings(dvc=False)
    return settings, add_version(settings, mnist1d(samples=600))


def test_score_set_covers_the_train_split(quick):
    settings, version = quick
    info = score_version(settings, version.id, epochs=2, seed=1)
    table = pq.read_table(settings.home / info.path)
    assert table.num_rows == version.splits["train"]
    assert np.all(np.diff(table.column("sample_id").to_numpy()) > 0)
    for name in ("loss", "el2n", "grad_norm", "entropy", "margin", "least_confidence", "forgetting"):
        values = table.column(name).to_numpy()
        assert np.isfinite(values).all() and (values >= 0).all(), name
    forgetting = table.column("forgetting").to_numpy()
    assert np.array_equal(forgetting, np.round(forgetting)) and forgetting.max() <= 1  # two epochs: at most one
    assert table.schema.field("gradient").type.list_size == 10
    assert info.ledger["selection_forward_samples"] > 0 and info.ledger["train_flops"] == 0

    plan, selector = select_plan(settings, version.id, "topk", {"budget": 50, "score": "el2n"}, info.id)
    el2n = table.column("el2n").to_numpy()
    assert set(selector.selected_) == set(table.column("sample_id").to_numpy()[np.argsort(-el2n)[:50]])
    assert plan.selection_seconds >= info.ledger["total_seconds"]  # scoring cost travels with the plan


def test_score_with_a_trained_model_and_cli(quick):
    from curation.training.config import TrainConfig
    from curation.training.run import train_version

    settings, version = quick
    outcome = train_version(settings, version.id, TrainConfig.make(epochs=1))
    result = CliRunner().invoke(app, ["score", str(version.id), "--model", str(outcome.model_version_id), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert "forgetting" not in info["columns"] and info["params"]["epochs"] == 0
    with pytest.raises(CurationError, match="no model version 999"):
        score_version(settings, version.id, model_version=999)
    bad = CliRunner().invoke(app, ["score", str(version.id), "--epochs", "0"])
    assert bad.exit_code == 2 and "--epochs must be at least 1" in bad.stderr
