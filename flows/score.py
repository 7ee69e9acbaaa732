"""The `score` flow: train a proxy model (or load one) and write a score set for a version."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from curation.config import load_settings
from curation.scoring.run import score_version
from flows._artifacts import record_table


@task(name="score-version", cache_policy=NO_CACHE)
def score_task(version: str, arch: str | None, epochs: int, seed: int, model_version: int | None) -> dict:
    return score_version(load_settings(), version, arch, epochs, seed, model_version).to_dict()


@flow(name="score", log_prints=True)
def score(
    version: str = "mnist1d", arch: str | None = None, epochs: int = 3, seed: int = 0, model_version: int | None = None
) -> dict:
    """Score every train sample of ``version``; returns the score set record (use its id with `curate`)."""
    return score_steps(version, arch, epochs, seed, model_version)


def score_steps(
    version: str, arch: str | None = None, epochs: int = 3, seed: int = 0, model_version: int | None = None
) -> dict:
    """The score flow's task and artifact, inside the calling flow (``score`` or ``end-to-end``)."""
    info = score_task(version, arch, epochs, seed, model_version)
    record_table("score-set", info, f"Score set {info['id']} of version {info['version_id']} ({info['scorer']})")
    print(f"score set {info['id']}: {', '.join(info['columns'])}")
    return info


if __name__ == "__main__":
    score()
