"""SQLAlchemy 2 models of the catalog: every piece of state the tool keeps, but never samples.

Samples live in Parquet files; the catalog holds what they are (hash, path, schema) and what
was done with them (scores, plans, runs, models, shipped sparse updates).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    versions: Mapped[list[DatasetVersion]] = relationship(back_populates="dataset", order_by="DatasetVersion.id")


class DatasetVersion(Base):
    """One immutable version of a data set: a Parquet file tracked by DVC."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "content_hash", name="uq_version_content"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    content_hash: Mapped[str] = mapped_column(String(64))  # DVC's md5 of the Parquet file
    path: Mapped[str] = mapped_column(String(1024))  # relative to the project home
    rows: Mapped[int] = mapped_column(BigInteger)
    num_features: Mapped[int] = mapped_column(Integer)
    feature_shape: Mapped[list[Any]] = mapped_column()
    schema: Mapped[dict[str, Any]] = mapped_column()  # column name -> Arrow type
    classes: Mapped[list[Any]] = mapped_column()
    splits: Mapped[dict[str, Any]] = mapped_column()  # split name -> rows
    source: Mapped[dict[str, Any]] = mapped_column()  # how it was made: kind and arguments
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    git_rev: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    dataset: Mapped[Dataset] = relationship(back_populates="versions")
    parent: Mapped[DatasetVersion | None] = relationship(remote_side=[id])


class ScoreSet(Base):
    """Per-sample scores (and optionally embeddings) of one data set version, as Parquet."""

    __tablename__ = "score_sets"

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    scorer: Mapped[str] = mapped_column(String(128))
    params: Mapped[dict[str, Any]] = mapped_column()
    columns: Mapped[list[Any]] = mapped_column()
    path: Mapped[str] = mapped_column(String(1024))
    content_hash: Mapped[str] = mapped_column(String(64))
    ledger: Mapped[dict[str, Any]] = mapped_column()  # scoring cost
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SelectionPlan(Base):
    """A subset or per-epoch plan. Generated plans (soft sampling, RS2) keep only their generator."""

    __tablename__ = "selection_plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    score_set_id: Mapped[int | None] = mapped_column(ForeignKey("score_sets.id"))
    method: Mapped[str] = mapped_column(String(128))
    params: Mapped[dict[str, Any]] = mapped_column()
    budget: Mapped[int | None] = mapped_column(BigInteger)
    ratio: Mapped[float | None] = mapped_column(Float)
    seed: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str | None] = mapped_column(String(1024))  # None for a generated plan
    content_hash: Mapped[str | None] = mapped_column(String(64))
    ledger: Mapped[dict[str, Any]] = mapped_column()  # selection cost
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TrainingRun(Base):
    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("selection_plans.id"))
    architecture: Mapped[str] = mapped_column(String(128))
    params: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="RUNNING")  # RUNNING, FINISHED, FAILED
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    ledger: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ModelVersion(Base):
    """A trained model; ``parent_id`` is the model it continued from (retraining lineage)."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    name: Mapped[str] = mapped_column(String(128))
    path: Mapped[str] = mapped_column(String(1024))
    content_hash: Mapped[str] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column()
    registry_version: Mapped[str | None] = mapped_column(String(32))  # MLflow registered model version
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ShippedUpdate(Base):
    """One sparse update shipped to a deployed replica (top-k of the update, residual kept)."""

    __tablename__ = "shipped_updates"
    __table_args__ = (UniqueConstraint("model_version_id", "sequence", name="uq_shipped_update_sequence"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    base_model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    sequence: Mapped[int] = mapped_column(Integer)
    rho: Mapped[float] = mapped_column(Float)
    path: Mapped[str] = mapped_column(String(1024))
    bytes: Mapped[int] = mapped_column(BigInteger)
    dense_bytes: Mapped[int] = mapped_column(BigInteger)
    gap: Mapped[float | None] = mapped_column(Float)  # max |trained - deployed| after applying
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
