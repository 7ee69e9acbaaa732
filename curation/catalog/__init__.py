"""The SQL catalog: one object to open it, transactions, and the queries the tool needs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from curation.catalog.engine import connect, redact
from curation.catalog.models import (
    Base,
    Dataset,
    DatasetVersion,
    ModelVersion,
    ScoreSet,
    SelectionPlan,
    ShippedUpdate,
    TrainingRun,
)
from curation.errors import CurationError
from curation.faults import kill_point

__all__ = [
    "Base",
    "Catalog",
    "Dataset",
    "DatasetVersion",
    "ModelVersion",
    "ScoreSet",
    "SelectionPlan",
    "ShippedUpdate",
    "TrainingRun",
    "redact",
]


class Catalog:
    """A catalog at a SQLAlchemy URL (SQLite or PostgreSQL), migrated on first use."""

    def __init__(self, url: str):
        self.url = url
        self.engine = connect(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Catalog({redact(self.url)!r})"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any exception."""
        with self._sessions.begin() as session:
            yield session

    # -- data set versions -------------------------------------------------------------------

    def find_version(self, dataset: str, content_hash: str) -> DatasetVersion | None:
        with self.session() as s:
            return s.scalar(
                select(DatasetVersion)
                .join(Dataset)
                .options(selectinload(DatasetVersion.dataset))
                .where(Dataset.name == dataset, DatasetVersion.content_hash == content_hash)
            )

    def add_version(self, dataset: str, **fields) -> tuple[DatasetVersion, bool]:
        """Insert a version (and its data set if new) in one transaction.

        Returns ``(version, created)``; the same content added concurrently yields the existing row, and a
        data set created meanwhile by another process (its name is unique) is used on a second try.
        """
        for attempt in range(2):
            try:
                with self.session() as s:
                    ds = s.scalar(select(Dataset).where(Dataset.name == dataset))
                    if ds is None:
                        ds = Dataset(name=dataset)
                        s.add(ds)
                        s.flush()
                    version = DatasetVersion(dataset=ds, **fields)
                    s.add(version)
                    s.flush()
                    kill_point("catalog:before-commit")
                return version, True
            except IntegrityError:
                existing = self.find_version(dataset, fields["content_hash"])
                if existing is not None:
                    return existing, False
                if attempt:
                    raise

    def versions(self, dataset: str | None = None) -> list[DatasetVersion]:
        with self.session() as s:
            query = select(DatasetVersion).join(Dataset).options(selectinload(DatasetVersion.dataset))
            if dataset is not None:
                query = query.where(Dataset.name == dataset)
            return list(s.scalars(query.order_by(DatasetVersion.id)))

    def version(self, ref: str | int) -> DatasetVersion:
        """A version by id (``12``), by data set name (its newest), or by ``name@hash-prefix``."""
        with self.session() as s:
            query = select(DatasetVersion).join(Dataset).options(selectinload(DatasetVersion.dataset))
            text = str(ref)
            if text.isdigit():
                found = s.scalar(query.where(DatasetVersion.id == int(text)))
            elif "@" in text:
                name, prefix = text.split("@", 1)
                hits = list(
                    s.scalars(
                        query.where(
                            Dataset.name == name, DatasetVersion.content_hash.startswith(prefix, autoescape=True)
                        )
                    )
                )
                if len(hits) > 1:
                    raise CurationError(f"version {text!r} is ambiguous ({len(hits)} matches)", "give more of the hash")
                found = hits[0] if hits else None
            else:
                found = s.scalar(query.where(Dataset.name == text).order_by(DatasetVersion.id.desc()).limit(1))
            if found is None:
                raise CurationError(
                    f"no data set version {text!r} in the catalog", "list versions with `curation data ls`"
                )
            return found
