"""Selecting from a data set version: build the selector's input, fit, store the plan, load it back.

A subset plan is written as Parquet (``epoch``, ``sample_id``, ``weight``; epoch -1 = every epoch)
under ``<data_dir>/plans/<md5>.parquet`` and recorded in the catalog in one transaction. A
generated plan (soft sampling, RS2) is stored as its generator only (method, ratio, seed) and
re-derived bit for bit when loaded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from curation.catalog import Catalog, ScoreSet, SelectionPlan
from curation.config import Settings
from curation.data.store import VersionReader, content_md5, features_numpy, file_md5
from curation.data.versions import VersionInfo, open_version
from curation.errors import CurationError
from curation.faults import kill_point
from curation.files import write_named
from curation.metrics.ledger import ComputeLedger
from curation.selection.base import SelectionInput, Selector, make_selector
from curation.selection.plans import EVERY_EPOCH, Plan, TablePlan
from curation.selection.sampling import SampledPlan


@dataclass
class PlanInfo:
    id: int
    version_id: int
    method: str
    params: dict
    budget: int | None
    ratio: float | None
    seed: int
    path: str | None
    content_hash: str | None
    selection_seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def selection_input(
    settings: Settings, ref: str | int, score_set_id: int | None = None
) -> tuple[VersionInfo, VersionReader, SelectionInput]:
    """The train split of a version (ids and labels; features read when a method asks for them) plus a score
    set's scores and embeddings."""
    info, reader = open_version(settings, ref)
    ids, labels = reader.arrays(["sample_id", "label"], "train")
    data = SelectionInput(info.id, ids, labels, read_features=lambda: features_numpy(reader.take(ids, ["features"])))
    if score_set_id is not None:
        _attach_scores(settings, info, data, score_set_id)
    return info, reader, data


def _attach_scores(settings: Settings, info: VersionInfo, data: SelectionInput, score_set_id: int) -> None:
    with Catalog(settings.catalog).session() as s:
        row = s.get(ScoreSet, score_set_id)
        if row is None:
            raise CurationError(f"no score set {score_set_id} in the catalog", "list them with `curation scores ls`")
        if row.version_id != info.id:
            raise CurationError(
                f"score set {score_set_id} belongs to version {row.version_id}, not {info.id}",
                "score this version first",
            )
        path = settings.home / row.path
    table = pq.read_table(path)
    order = np.searchsorted(table.column("sample_id").to_numpy(), data.sample_ids)
    for name in table.column_names:
        column = table.column(name)
        if name == "sample_id":
            continue
        if name in ("embedding", "gradient"):
            matrix = features_numpy(table.select([name]).rename_columns(["features"]))[order]
            setattr(data, "embeddings" if name == "embedding" else "gradients", matrix)
        else:
            data.scores[name] = column.to_numpy()[order]


def _write_plan(settings: Settings, plan: Plan) -> tuple[str, str]:
    """Write a subset plan's table atomically under its md5; returns (relative path, md5)."""
    ids = plan.ids(0)
    weights = plan.weights(0)
    table = pa.table(
        {
            "epoch": pa.array(np.full(len(ids), EVERY_EPOCH, np.int32)),
            "sample_id": pa.array(ids, pa.int64()),
            "weight": pa.array(np.ones(len(ids), np.float32) if weights is None else weights, pa.float32()),
        }
    )

    def write(tmp):
        pq.write_table(table, tmp, use_dictionary=["epoch"])  # no dictionary of ids: its hash table grows with N

    target = write_named(settings.data_path / "plans", write, lambda tmp: f"{file_md5(tmp)}.parquet")
    return str(target.relative_to(settings.home)), target.stem


def select_plan(
    settings: Settings, ref: str | int, method: str, params: dict | None = None, score_set_id: int | None = None
) -> tuple[PlanInfo, Selector]:
    """Fit ``method`` on the version's train split and record the plan; returns it and the fitted selector."""
    selector = make_selector(method, **(params or {}))
    if selector.online:
        raise CurationError(
            f"{method} is an online method: it decides inside training, so it has no plan",
            f"train it beside the others: `curation compare VERSION -m {method}`",
        )
    info, _, data = selection_input(settings, ref, score_set_id)
    selector.fit(data)
    kill_point("select:after-fit")
    path = digest = None
    if not selector.generated:
        path, digest = _write_plan(settings, selector.plan_)
    kill_point("select:after-write")
    chosen = getattr(selector, "selected_", None)
    fields = selector.get_params()
    ledger = ComputeLedger()
    if score_set_id is not None:  # the scores' cost is part of this selection's cost
        with Catalog(settings.catalog).session() as s:
            ledger.absorb_selection(ComputeLedger.from_dict(s.get(ScoreSet, score_set_id).ledger))
    ledger.book_selection(seconds=selector.selection_seconds_)
    row = SelectionPlan(
        version_id=info.id,
        score_set_id=score_set_id,
        method=selector.name,
        params=_jsonable(fields),
        budget=None if chosen is None or selector.generated else len(chosen),
        ratio=fields.get("ratio") if selector.generated else (len(chosen) / data.n if chosen is not None else None),
        seed=int(fields.get("seed", 0)),
        path=path,
        content_hash=digest,
        ledger=ledger.to_dict(),
    )
    with Catalog(settings.catalog).session() as s:
        s.add(row)
        s.flush()
        kill_point("select:before-commit")
    return plan_info(row), selector


def plan_info(row: SelectionPlan) -> PlanInfo:
    """A catalog plan row as the PlanInfo every caller gets (its selection time from the row's ledger)."""
    return PlanInfo(
        row.id,
        row.version_id,
        row.method,
        row.params,
        row.budget,
        row.ratio,
        row.seed,
        row.path,
        row.content_hash,
        row.ledger.get("selection_seconds", 0.0),
    )


def load_plan(settings: Settings, plan_id: int) -> Plan:
    """A stored plan as the Trainer consumes it; generated plans are re-derived from their seed."""
    with Catalog(settings.catalog).session() as s:
        row = s.get(SelectionPlan, plan_id)
        if row is None:
            raise CurationError(f"no selection plan {plan_id} in the catalog", "list plans with `curation plans ls`")
    if row.path is None:
        _, reader = open_version(settings, row.version_id)
        return SampledPlan(row.version_id, reader.split_ids("train"), row.method, row.params["ratio"], row.seed)
    path = settings.home / row.path
    intact = path.exists() and content_md5(path) == row.content_hash  # a distributed plan is a folder of parts
    if not intact:
        raise CurationError(
            f"plan {row.path} is missing or was changed by hand (its hash differs from the catalog)",
            "select again to write a fresh plan",
        )
    return TablePlan.read(path, row.version_id, method=row.method)


def plans(settings: Settings, version_id: int | None = None) -> list[PlanInfo]:
    with Catalog(settings.catalog).session() as s:
        query = select(SelectionPlan).order_by(SelectionPlan.id)
        if version_id is not None:
            query = query.where(SelectionPlan.version_id == version_id)
        return [plan_info(r) for r in s.scalars(query)]


def _jsonable(params: dict) -> dict:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}
