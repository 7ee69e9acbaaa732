"""A curation project on disk: git + DVC, the catalog, the MLflow store, ignore rules."""

from __future__ import annotations

from pathlib import Path

from curation.catalog import Catalog
from curation.config import Settings
from curation.data.dvc_repo import ensure_repo, set_remote
from curation.errors import CurationError

IGNORED = [
    "/catalog.db*",
    "/mlflow/mlflow.db",
    "/mlflow/artifacts/",
    "/data/.staging/",
    "/data/plans/",
    "/data/scores/",
    "/.curation/",
]


def init_project(settings: Settings, remote: str | None = None) -> list[str]:
    """Prepare ``settings.home``; safe to run again. ``remote``: DVC's default remote (a folder or an
    object-store URL) that every new version is pushed to. Returns what was done."""
    if remote is not None and not settings.dvc:
        raise CurationError("--remote needs DVC, but CURATION_DVC is false", "drop --remote or enable DVC")
    done = ensure_repo(settings.home, git=True) if settings.dvc else []
    if remote is not None:
        done.append(f"DVC remote {set_remote(settings.home, remote)}")
    Catalog(settings.catalog)
    (settings.home / "mlflow").mkdir(parents=True, exist_ok=True)
    settings.data_path.mkdir(parents=True, exist_ok=True)
    if _ensure_ignored(settings.home / ".gitignore", IGNORED):
        done.append("updated .gitignore")
    return done


def _ensure_ignored(gitignore: Path, patterns: list[str]) -> bool:
    existing = gitignore.read_text().splitlines() if gitignore.exists() else []
    missing = [p for p in patterns if p not in existing]
    if missing:
        with open(gitignore, "a") as handle:
            if existing and existing[-1] != "":
                handle.write("\n")
            handle.write("\n".join(missing) + "\n")
    return bool(missing)
