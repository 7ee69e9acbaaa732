"""Scoring a version: train a proxy model for a few epochs (or load a trained one), then stream the
train split through it in batches (``scores.score_table``) and write every score, the penultimate
embedding and the last-layer gradient as a score set (Parquet + catalog row, with the scoring cost in
its ledger)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from curation.catalog import Catalog, ModelVersion, ScoreSet
from curation.config import Settings
from curation.data.store import file_md5
from curation.data.versions import open_version
from curation.errors import CurationError
from curation.faults import kill_point
from curation.files import write_named
from curation.metrics.ledger import ComputeLedger
from curation.scoring.scores import forgetting_events, predict, score_table
from curation.selection.plans import FullPlan
from curation.training.checkpoint import load_checkpoint
from curation.training.config import TrainConfig
from curation.training.data import TrainingData
from curation.training.trainer import Callback, Trainer, inference_batch, resolve_device


@dataclass
class ScoreInfo:
    id: int
    version_id: int
    scorer: str
    params: dict
    columns: list
    path: str
    content_hash: str
    ledger: dict

    def to_dict(self) -> dict:
        return asdict(self)


class _Forgetting(Callback):
    """After every proxy epoch, record which train examples the model gets right (booked as scoring forwards)."""

    def __init__(self, model: torch.nn.Module, data: TrainingData, ledger_of):
        self.model, self.data, self.ledger_of, self.correct = model, data, ledger_of, []

    def on_epoch_end(self, record: dict) -> None:
        split = self.data.train
        right = np.empty(len(split), dtype=bool)
        size = inference_batch(split.device)
        for lo in range(0, len(split), size):
            rows = np.arange(lo, min(lo + size, len(split)))
            logits, y, _ = predict(self.model, split, rows)
            right[rows] = (logits.argmax(1) == y).cpu().numpy()
        self.ledger_of().book_selection(forwards=len(split))
        self.correct.append(right)


def score_version(
    settings: Settings,
    ref: str | int,
    arch: str | None = None,
    epochs: int = 3,
    seed: int = 0,
    model_version: int | None = None,
    device: str = "auto",
) -> ScoreInfo:
    """Score ``ref``'s train split with a proxy (trained here for ``epochs``, or catalog model ``model_version``)."""
    from models import ModelSpec, build

    info, reader = open_version(settings, ref)
    catalog = Catalog(settings.catalog)
    checkpoint = None
    if model_version is not None:
        with catalog.session() as s:
            row = s.get(ModelVersion, model_version)
            if row is None:
                raise CurationError(f"no model version {model_version} in the catalog", "give a trained model's id")
            checkpoint = load_checkpoint(settings.home / row.path)
        arch = arch or checkpoint["arch"]
    cfg = TrainConfig.make(arch=arch, epochs=epochs, seed=seed, device=device).resolve(
        info.feature_shape, images=reader.images
    )
    data = TrainingData.load(reader, info.id, info.feature_shape, resolve_device(cfg.device), cfg.workers)
    torch.manual_seed(cfg.seed)
    model = build(cfg.arch, ModelSpec.of(info))
    trainer = Trainer(model, data, cfg)
    forgetting = None
    if checkpoint is not None:
        if checkpoint["arch"] != cfg.arch or list(checkpoint["feature_shape"]) != list(info.feature_shape):
            raise CurationError(
                f"model version {model_version} is a {checkpoint['arch']} for input shape "
                f"{checkpoint['feature_shape']}, not {cfg.arch} for {info.feature_shape}",
                "score with a model trained on this data set",
            )
        try:
            model.load_state_dict(checkpoint["model"])
        except RuntimeError as exc:
            raise CurationError(
                f"model version {model_version} does not fit version {info.id} ({str(exc).splitlines()[0][:120]})",
                "score with a model trained on this data set",
            ) from None
    else:
        tracker = _Forgetting(model, data, lambda: trainer.ledger)
        trainer.callbacks.append(tracker)
        trainer.fit(FullPlan(info.id, data.train.sample_ids))
        forgetting = forgetting_events(np.stack(tracker.correct))
    ledger = trainer.ledger
    table = score_table(model, data.train, forgetting)
    ledger.book_selection(forwards=len(data.train))
    kill_point("score:before-write")
    path, digest = _write(settings, table)
    params = {
        "arch": cfg.arch,
        "epochs": 0 if checkpoint is not None else cfg.epochs,
        "seed": cfg.seed,
        "model_version": model_version,
    }
    row = ScoreSet(
        version_id=info.id,
        scorer=f"proxy:{cfg.arch}",
        params=params,
        columns=[c for c in table.column_names if c != "sample_id"],
        path=path,
        content_hash=digest,
        ledger=_as_scoring_cost(ledger),
    )
    with catalog.session() as s:
        s.add(row)
        s.flush()
        kill_point("score:before-commit")
    return ScoreInfo(
        row.id, row.version_id, row.scorer, row.params, row.columns, row.path, row.content_hash, row.ledger
    )


def _as_scoring_cost(ledger: ComputeLedger) -> dict:
    """Everything the proxy cost (its training included) booked as selection cost."""
    cost = ComputeLedger(flops_per_sample=ledger.flops_per_sample)
    cost.absorb_selection(ledger)
    return cost.to_dict()


def _write(settings: Settings, table: pa.Table) -> tuple[str, str]:
    target = write_named(
        settings.data_path / "scores",
        lambda tmp: pq.write_table(table, tmp, compression="lz4"),
        lambda tmp: f"{file_md5(tmp)}.parquet",
    )
    return str(target.relative_to(settings.home)), target.stem
