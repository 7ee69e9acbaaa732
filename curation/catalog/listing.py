"""The catalog's records as the `ls` and `show` commands print them: score sets, plans, runs, models.

Each record is a plain dict (JSON-ready: datetimes as ISO strings) with the data set version it
belongs to (``dataset``, ``version_id``, ``version`` as name@hash-prefix). Lists are ordered by id
and filtered by data set name; an unknown data set or id is a one-line error naming the fix.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from curation.catalog import Catalog
from curation.catalog.models import (
    Dataset,
    DatasetVersion,
    ModelVersion,
    ScoreSet,
    SelectionPlan,
    ShippedUpdate,
    TrainingRun,
)
from curation.errors import CurationError


def lineage_of(params: dict) -> str | None:
    """The retraining lineage a run belongs to (runs from before the rename recorded it as 'pipeline')."""
    return params.get("lineage", params.get("pipeline"))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def _version(v: DatasetVersion) -> dict:
    return {"dataset": v.dataset.name, "version_id": v.id, "version": f"{v.dataset.name}@{v.content_hash[:8]}"}


def _versions(s: Session, dataset: str | None) -> dict[int, DatasetVersion]:
    """The versions by id (of ``dataset`` only, when given: a one-line error if there is no such data set)."""
    query = select(DatasetVersion).join(Dataset).options(selectinload(DatasetVersion.dataset))
    if dataset is not None:
        if s.scalar(select(Dataset.id).where(Dataset.name == dataset)) is None:
            raise CurationError(f"no data set {dataset!r} in the catalog", "list data sets with `curation data ls`")
        query = query.where(Dataset.name == dataset)
    return {v.id: v for v in s.scalars(query)}


def _get(s: Session, model, ident: int):
    """The row with id ``ident``, or None (also for ids no database column can hold)."""
    return s.get(model, ident) if 0 < ident < 2**63 else None


def _rows(s: Session, model, dataset: str | None, *where) -> tuple[list, dict[int, DatasetVersion]]:
    """``model``'s rows (of ``dataset``'s versions, matching ``where``) by id, and the versions they belong to."""
    versions = _versions(s, dataset)
    query = select(model).where(*where)
    if dataset is not None:
        query = query.where(model.version_id.in_(list(versions)))
    return list(s.scalars(query.order_by(model.id))), versions


# -- score sets -----------------------------------------------------------------------------------


def _score_set(row: ScoreSet, version: DatasetVersion) -> dict:
    return {
        "id": row.id,
        **_version(version),
        "scorer": row.scorer,
        "params": row.params,
        "columns": row.columns,
        "path": row.path,
        "content_hash": row.content_hash,
        "ledger": row.ledger,
        "mlflow_run_id": row.mlflow_run_id,
        "created_at": _iso(row.created_at),
    }


def score_sets(catalog: Catalog, dataset: str | None = None) -> list[dict]:
    with catalog.session() as s:
        rows, versions = _rows(s, ScoreSet, dataset)
        return [_score_set(r, versions[r.version_id]) for r in rows]


def score_set(catalog: Catalog, ident: int) -> dict:
    with catalog.session() as s:
        row = _get(s, ScoreSet, ident)
        if row is None:
            raise CurationError(f"no score set {ident} in the catalog", "list them with `curation scores ls`")
        plans = s.scalars(
            select(SelectionPlan.id).where(SelectionPlan.score_set_id == ident).order_by(SelectionPlan.id)
        )
        return {**_score_set(row, s.get(DatasetVersion, row.version_id)), "plans": list(plans)}


# -- selection plans ------------------------------------------------------------------------------


def _plan(row: SelectionPlan, version: DatasetVersion) -> dict:
    return {
        "id": row.id,
        **_version(version),
        "method": row.method,
        "params": row.params,
        "budget": row.budget,
        "ratio": row.ratio,
        "seed": row.seed,
        "score_set_id": row.score_set_id,
        "generated": row.path is None,
        "path": row.path,
        "content_hash": row.content_hash,
        "ledger": row.ledger,
        "created_at": _iso(row.created_at),
    }


def plans(catalog: Catalog, dataset: str | None = None) -> list[dict]:
    with catalog.session() as s:
        rows, versions = _rows(s, SelectionPlan, dataset)
        return [_plan(r, versions[r.version_id]) for r in rows]


def plan(catalog: Catalog, ident: int) -> dict:
    with catalog.session() as s:
        row = _get(s, SelectionPlan, ident)
        if row is None:
            raise CurationError(f"no selection plan {ident} in the catalog", "list them with `curation plans ls`")
        runs = s.scalars(select(TrainingRun.id).where(TrainingRun.plan_id == ident).order_by(TrainingRun.id))
        return {**_plan(row, s.get(DatasetVersion, row.version_id)), "runs": list(runs)}


# -- training runs --------------------------------------------------------------------------------


def _run(row: TrainingRun, version: DatasetVersion, models: list[int]) -> dict:
    return {
        "id": row.id,
        **_version(version),
        "plan_id": row.plan_id,
        "architecture": row.architecture,
        "status": row.status,
        "lineage": lineage_of(row.params),
        "params": row.params,
        "summary": (row.metrics or {}).get("summary", {}),
        "ledger": row.ledger,
        "mlflow_run_id": row.mlflow_run_id,
        "model_version_ids": models,
        "started_at": _iso(row.started_at),
        "ended_at": _iso(row.ended_at),
    }


def _models_of(s: Session, run_ids: list[int]) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    if run_ids:
        for model_id, run_id in s.execute(
            select(ModelVersion.id, ModelVersion.run_id)
            .where(ModelVersion.run_id.in_(run_ids))
            .order_by(ModelVersion.id)
        ):
            found.setdefault(run_id, []).append(model_id)
    return found


def runs(catalog: Catalog, dataset: str | None = None, status: str | None = None) -> list[dict]:
    with catalog.session() as s:
        rows, versions = _rows(s, TrainingRun, dataset, *([] if status is None else [TrainingRun.status == status]))
        models = _models_of(s, [r.id for r in rows])
        return [_run(r, versions[r.version_id], models.get(r.id, [])) for r in rows]


def run(catalog: Catalog, ident: int) -> dict:
    """A run with its full per-evaluation history (``history``)."""
    with catalog.session() as s:
        row = _get(s, TrainingRun, ident)
        if row is None:
            raise CurationError(f"no training run {ident} in the catalog", "list them with `curation runs ls`")
        detail = _run(row, s.get(DatasetVersion, row.version_id), _models_of(s, [ident]).get(ident, []))
        return {**detail, "history": (row.metrics or {}).get("history", [])}


# -- model versions -------------------------------------------------------------------------------


def _model(row: ModelVersion, run_row: TrainingRun, version: DatasetVersion) -> dict:
    return {
        "id": row.id,
        **_version(version),
        "name": row.name,
        "registry_version": row.registry_version,
        "run_id": row.run_id,
        "parent_id": row.parent_id,
        "architecture": run_row.architecture,
        "lineage": lineage_of(run_row.params),
        "promoted": bool(row.metrics.get("promoted")),
        "metrics": row.metrics,
        "path": row.path,
        "content_hash": row.content_hash,
        "mlflow_run_id": run_row.mlflow_run_id,
        "created_at": _iso(row.created_at),
    }


def models(catalog: Catalog, dataset: str | None = None, lineage_name: str | None = None) -> list[dict]:
    with catalog.session() as s:
        versions = _versions(s, dataset)
        query = select(ModelVersion, TrainingRun).join(TrainingRun, ModelVersion.run_id == TrainingRun.id)
        if dataset is not None:
            query = query.where(TrainingRun.version_id.in_(list(versions)))
        pairs = s.execute(query.order_by(ModelVersion.id))
        return [
            _model(m, r, versions[r.version_id])
            for m, r in pairs
            if lineage_name is None or lineage_of(r.params) == lineage_name
        ]


def model(catalog: Catalog, ident: int) -> dict:
    """A model with the sparse updates shipped for it (``shipped_updates``)."""
    with catalog.session() as s:
        row = _get(s, ModelVersion, ident)
        if row is None:
            raise CurationError(f"no model version {ident} in the catalog", "list them with `curation models ls`")
        run_row = s.get(TrainingRun, row.run_id)
        shipped = s.scalars(
            select(ShippedUpdate).where(ShippedUpdate.model_version_id == ident).order_by(ShippedUpdate.sequence)
        )
        updates = [
            {
                "sequence": u.sequence,
                "rho": u.rho,
                "bytes": u.bytes,
                "dense_bytes": u.dense_bytes,
                "gap": u.gap,
                "path": u.path,
            }
            for u in shipped
        ]
        return {**_model(row, run_row, s.get(DatasetVersion, run_row.version_id)), "shipped_updates": updates}
