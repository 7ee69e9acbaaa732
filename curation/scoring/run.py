"""Scoring a version: train a proxy model for a few epochs (or load a trained one), then stream the
train split through it in batches (``scores.score_batches``), here or on Dask workers (``engine=dask``,
``distributed.scoring``), and write every score, the penultimate embedding and the last-layer gradient as a
score set (a folder of Parquet parts, each the train rows of a range of the version's row groups, hashed as
DVC hashes a folder; a catalog row with the scoring cost in its ledger). The parts are cut the same way on
both engines, so the same model gives the same bytes: a Dask worker writes its parts in place of this process.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from curation.catalog import Catalog, ModelVersion, ScoreSet
from curation.choices import DataPath, Engine
from curation.config import Settings
from curation.data.store import SHARD, file_md5, folder_md5, publish, recut
from curation.data.versions import VersionInfo, open_version
from curation.errors import CurationError
from curation.faults import kill_point
from curation.files import temporary_path
from curation.metrics.ledger import ComputeLedger
from curation.scoring.scores import forgetting_events, predict, score_batches
from curation.selection.plans import FullPlan
from curation.training.checkpoint import load_checkpoint
from curation.training.config import TrainConfig
from curation.training.data import TrainingData
from curation.training.streaming import StreamedSplit, run_bounds
from curation.training.trainer import Callback, Trainer, inference_batch, resolve_device

SCORE_GROUP_ROWS = 16_384  # rows of a score set's row group
PART_ROWS = 131_072  # rows of a score set's part, about (parts hold whole row groups of the version)


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
        for rows, x, y in split.in_order(inference_batch(split.device)):
            logits, _ = predict(self.model, x)
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
    data_path: DataPath | str = DataPath.auto,
    workers: int = 2,
    engine: Engine | str = Engine.local,
    scheduler: str | None = None,
    client=None,
) -> ScoreInfo:
    """Score ``ref``'s train split with a proxy (trained here for ``epochs``, or catalog model ``model_version``);
    ``data_path`` and ``workers`` as in ``TrainConfig``. ``engine=dask`` scores on a LocalCluster, on
    ``scheduler`` (tcp://host:port) or on ``client``, with the same scores."""
    engine = Engine(engine)
    if scheduler is not None and engine != Engine.dask:
        raise CurationError("--scheduler needs --engine dask", "add --engine dask")
    if engine == Engine.dask and model_version is not None and DataPath(data_path) == DataPath.auto:
        data_path = DataPath.stream  # the Dask workers read the rows: this process needs only their ids
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
    cfg = TrainConfig.make(
        arch=arch, epochs=epochs, seed=seed, device=device, data_path=data_path, workers=workers
    ).resolve(info.feature_shape, images=reader.images)
    data = TrainingData.load(
        reader, info.id, info.feature_shape, resolve_device(cfg.device), cfg.workers, cfg.data_path
    )
    try:
        with _engine(engine, scheduler, client) as active:
            return _score(settings, catalog, info, data, cfg, checkpoint, model_version, active)
    finally:
        data.close()


def _score(
    settings: Settings,
    catalog: Catalog,
    info: VersionInfo,
    data: TrainingData,
    cfg: TrainConfig,
    checkpoint: dict | None,
    model_version: int | None,
    client,
) -> ScoreInfo:
    from models import ModelSpec, build

    torch.manual_seed(cfg.seed)
    spec = ModelSpec.of(info)
    model = build(cfg.arch, spec)
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
    path, digest, columns = _write(settings, data, (cfg.arch, spec, model), forgetting, client)
    ledger.book_selection(forwards=len(data.train))
    params = {
        "arch": cfg.arch,
        "epochs": 0 if checkpoint is not None else cfg.epochs,
        "seed": cfg.seed,
        "model_version": model_version,
        "engine": (Engine.local if client is None else Engine.dask).value,
    }
    row = ScoreSet(
        version_id=info.id,
        scorer=f"proxy:{cfg.arch}",
        params=params,
        columns=columns,
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


@contextmanager
def _engine(engine: Engine, scheduler: str | None, client) -> Iterator:
    """The Dask client to score on (opened for this call unless given), or None to score here."""
    if engine == Engine.local:
        yield None
        return
    from curation.distributed.run import dask_modules

    [cluster] = dask_modules("cluster")
    with nullcontext(client) if client is not None else cluster.open_client(scheduler) as active:
        yield active


def _write(
    settings: Settings, data: TrainingData, proxy: tuple, forgetting: np.ndarray | None, client
) -> tuple[str, str, list[str]]:
    """Score the train split with ``proxy`` = (arch, ModelSpec, model) here, or (``client``) on Dask workers, to
    which the model goes as its state dict; the parts are written to a hidden folder, then moved into place under
    their folder hash. The score set's path, hash and score columns."""
    arch, spec, model = proxy
    train = data.train  # a streamed split knows its rows' places in the file; one in memory looks them up
    file_rows = train.file_rows if isinstance(train, StreamedSplit) else data.reader.rows_of(train.sample_ids)
    bounds = part_bounds(data.reader.group_starts, file_rows)
    scores = settings.data_path / "scores"
    folder = temporary_path(scores, "scores")
    folder.mkdir(parents=True)
    try:
        if client is None:
            digests, schema = write_parts(folder, score_batches(model, train, forgetting), bounds)
        else:
            from curation.distributed.run import dask_modules

            [scoring] = dask_modules("scoring")
            state = {name: value.detach().cpu() for name, value in model.state_dict().items()}
            rows = (train.sample_ids, file_rows)
            digests = scoring.scores_on_dask(
                client, data.reader, data.feature_shape, (arch, spec, state), rows, forgetting, bounds, folder
            )
            schema = pq.read_schema(folder / SHARD.format(0))
        kill_point("score:before-write")
        digest = folder_md5(digests)
        target = scores / digest.removesuffix(".dir")
        publish(folder, target)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return str(target.relative_to(settings.home)), digest, [c for c in schema.names if c != "sample_id"]


def part_bounds(starts: np.ndarray, file_rows: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) positions in ``file_rows`` (sorted) of a score set's parts: about ``PART_ROWS`` rows each, the
    rows of a contiguous range of the row groups that hold any (``starts``: ``VersionReader.group_starts``). They
    depend on the version and the split only, never on the engine or its workers."""
    bounds = run_bounds(starts, file_rows)
    used = np.flatnonzero(np.diff(bounds))
    owned = np.array_split(used, min(-(-len(file_rows) // PART_ROWS), len(used))) if len(used) else []
    edges = [int(bounds[g[0]]) for g in owned] + [len(file_rows)]
    return [(lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]


def write_parts(
    folder: Path, batches: Iterator[pa.RecordBatch], bounds: list[tuple[int, int]], first: int = 0
) -> tuple[dict[str, str], pa.Schema]:
    """The score batches (in row order, never across a part's edge) written as the parts ``bounds`` (numbered from
    ``first``) into ``folder``: {file name: md5}, and their schema."""
    batches, digests, schema = iter(batches), {}, None
    for k, (lo, hi) in enumerate(bounds, first):

        def part(left: int = hi - lo, k: int = k) -> Iterator[pa.RecordBatch]:
            while left > 0:
                batch = next(batches)
                left -= batch.num_rows
                yield batch
            if left:
                raise RuntimeError(f"a score batch crosses the edge of part {k}")

        path = folder / SHARD.format(k)
        schema = write_batches(path, part())
        digests[path.name] = file_md5(path)
    return digests, schema


def _as_scoring_cost(ledger: ComputeLedger) -> dict:
    """Everything the proxy cost (its training included) booked as selection cost."""
    cost = ComputeLedger(flops_per_sample=ledger.flops_per_sample)
    cost.absorb_selection(ledger)
    return cost.to_dict()


def write_batches(path: Path, batches: Iterator[pa.RecordBatch]) -> pa.Schema:
    """Record batches into one Parquet file in row groups of ``SCORE_GROUP_ROWS`` rows, however the batches are
    cut (the writer holds each group's metadata until it closes: few groups keep that small); their schema. Scores
    and embeddings are floats that neither a dictionary nor lz4 shrinks (a 105k-row part of 256-wide embeddings:
    111 MB in 0.92 s with both, 110 MB in 0.34 s plain), so they are written plain, statistics on ids only."""
    first = next(batches)
    plain = {"compression": "none", "use_dictionary": False, "write_statistics": ["sample_id"]}
    with pq.ParquetWriter(path, first.schema, **plain) as writer:
        for table in recut(chain([first], batches), first.schema, SCORE_GROUP_ROWS):
            writer.write_table(table, row_group_size=SCORE_GROUP_ROWS)
    return first.schema
