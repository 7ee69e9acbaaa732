"""Adding a data set version: stage, deduplicate, publish, track with DVC, record in the catalog.

The catalog row is written last, in one transaction: a crash at any step leaves no half-registered
version, and the next run reuses whatever bytes were already published.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from curation.catalog import Catalog, DatasetVersion
from curation.config import Settings
from curation.data.contract import check_name, read_manifest
from curation.data.dvc_repo import (
    default_remote,
    dvc_hash,
    dvc_pull,
    dvc_push,
    dvc_track,
    dvc_untrack,
    ensure_repo,
    git_revision,
)
from curation.data.sources import Loaded
from curation.data.store import Staged, VersionReader, final_path, publish, remove, stage
from curation.errors import CurationError
from curation.faults import kill_point


@dataclass
class VersionInfo:
    """A version as the CLI and flows report it."""

    id: int
    dataset: str
    content_hash: str
    path: str
    rows: int
    num_features: int
    feature_shape: list
    classes: list
    splits: dict
    source: dict
    parent_id: int | None
    git_rev: str | None
    created_at: str
    schema_columns: list
    created: bool = False

    @classmethod
    def of(cls, v: DatasetVersion, created: bool = False) -> VersionInfo:
        return cls(
            v.id,
            v.dataset.name,
            v.content_hash,
            v.path,
            v.rows,
            v.num_features,
            v.feature_shape,
            v.classes,
            v.splits,
            v.source,
            v.parent_id,
            v.git_rev,
            v.created_at.isoformat() if isinstance(v.created_at, datetime) else str(v.created_at),
            sorted(v.schema),
            created,
        )

    @property
    def ref(self) -> str:
        return f"{self.dataset}@{self.content_hash[:8]}"

    def to_dict(self) -> dict:
        return asdict(self)


def stage_version(settings: Settings, loaded: Loaded) -> Staged:
    """Write the loaded rows to the staging area and hash them (nothing visible yet); a version needs two classes."""
    m = read_manifest(loaded.schema)
    if len(m["classes"]) < 2:
        names = m.get("class_names")
        only = names[m["classes"][0]] if names else m["classes"][0]
        raise CurationError(
            f"the data has only one class ({only!r}); a classifier needs at least 2",
            "add rows of at least one more class",
        )
    return stage(loaded.schema, loaded.tables(), settings.data_path)


def register(settings: Settings, staged: Staged, name: str, source: dict, parent: str | None = None) -> VersionInfo:
    """Publish a staged version, track it with DVC and record it; the same bytes return the existing version."""
    try:
        return _register(settings, staged, check_name(name), source, parent)
    finally:
        staged.discard()  # a no-op once published


def _register(settings: Settings, staged: Staged, name: str, source: dict, parent: str | None) -> VersionInfo:
    catalog = Catalog(settings.catalog)
    parent_id = catalog.version(parent).id if parent else None
    existing = catalog.find_version(name, staged.content_hash)
    if existing is not None:
        return VersionInfo.of(existing, created=False)
    target = final_path(settings.data_path, name, staged.content_hash)
    gitignore = target.parent / ".gitignore"
    gitignore_before = gitignore.read_text() if gitignore.exists() else None
    kill_point("register:before-publish")
    publish(staged.path, target)
    try:
        kill_point("register:after-publish")
        if settings.dvc:
            ensure_repo(settings.home)
            recorded = dvc_track(settings.home, target)
            kill_point("register:after-dvc-add")
            if recorded != staged.content_hash:
                raise CurationError(
                    f"DVC recorded hash {recorded} for {target}, expected {staged.content_hash}",
                    "report this: the file changed while it was being added",
                )
        m = staged.manifest
        version, created = catalog.add_version(
            name,
            content_hash=staged.content_hash,
            path=str(_relative(target, settings.home)),
            rows=m["rows"],
            num_features=m["num_features"],
            feature_shape=m["feature_shape"],
            schema=m["schema"],
            classes=m["classes"],
            splits=m["splits"],
            source=source,
            parent_id=parent_id,
            git_rev=git_revision(settings.home),
        )
        kill_point("register:after-commit")
    except BaseException:
        if catalog.find_version(name, staged.content_hash) is None:  # nobody claims the bytes: take them back
            remove(target)
            if settings.dvc:
                dvc_untrack(target, gitignore_before)
        raise
    return VersionInfo.of(version, created=created)


def add_version(settings: Settings, loaded: Loaded, name: str | None = None, parent: str | None = None) -> VersionInfo:
    """The whole of ``curation data add``: stage, then register."""
    name = check_name(name or loaded.default_name)
    Catalog(settings.catalog)  # fail on an unreachable catalog before writing anything
    info = register(settings, stage_version(settings, loaded), name, loaded.source, parent)
    push_version(settings, info)
    return info


def push_version(settings: Settings, info: VersionInfo) -> str | None:
    """``dvc push`` a version's shards when the project has a default DVC remote; the remote's URL, or None.

    Idempotent (an object the remote holds is not sent again), so a failed push is mended by running it again.
    """
    remote = default_remote(settings.home) if settings.dvc else None
    if remote is not None:
        dvc_push(settings.home, settings.home / info.path)
    return remote


def open_version(settings: Settings, ref: str | int) -> tuple[VersionInfo, VersionReader]:
    """A version's catalog record and a lazy reader of its shards; a version this machine lacks is pulled from
    the DVC remote first (its .dvc file is in the repository, its bytes in the remote)."""
    info = VersionInfo.of(Catalog(settings.catalog).version(ref))
    path = settings.home / info.path
    if not path.exists() and dvc_hash(path) is not None and default_remote(settings.home) is not None:
        dvc_pull(settings.home, path)
    return info, VersionReader(path)


def _relative(path: Path, home: Path) -> Path:
    try:
        return path.resolve().relative_to(home.resolve())
    except ValueError:
        return path.resolve()
