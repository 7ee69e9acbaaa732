"""The `retrain` flow: train the lineage's model on whatever chunks landed since its last run.

Idempotent: a chunk version a lineage has trained on is never trained on again, so a schedule can
run it every few minutes. Each trigger decision is printed with its reason and published as a table.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from curation.choices import Device, Mode, Policy, Ship, Strategy
from curation.config import load_settings
from curation.continual.proactive import ContinualConfig
from curation.continual.retrain import retrain as retrain_pipeline
from curation.training.config import TrainConfig


@task(name="retrain-lineage", cache_policy=NO_CACHE)
def retrain_task(dataset: str, lineage: str | None, config: dict, train: dict, rho: float, ship: Ship | None) -> dict:
    return retrain_pipeline(
        load_settings(), dataset, lineage, ContinualConfig.make(**config), TrainConfig.make(**train), rho, ship
    ).to_dict()


@flow(name="retrain", log_prints=True)
def retrain(
    dataset: str = "stream",
    lineage: str | None = None,
    mode: Mode = Mode.proactive,
    new_per_batch: int | None = None,
    strategy: Strategy = Strategy.uniform,
    passes: int = 8,
    policy: Policy = Policy.fixed,
    every: int = 3,
    min_samples: int = 1000,
    rho: float = 1e-3,
    ship: Ship | None = None,
    arch: str | None = None,
    epochs: int | None = None,
    seed: int = 0,
    device: Device = Device.auto,
) -> dict:
    """Bring lineage ``lineage`` up to date with ``dataset``'s chunks; returns what it did."""
    config = {
        "mode": mode,
        "new_per_batch": new_per_batch,
        "strategy": strategy,
        "passes": passes,
        "policy": policy,
        "every": every,
        "min_samples": min_samples,
    }
    outcome = retrain_task(
        dataset, lineage, config, {"arch": arch, "epochs": epochs, "seed": seed, "device": device}, rho, ship
    )
    for d in outcome["decisions"]:
        print(f"trigger {d['trigger']}: {'fired' if d['fire'] else 'quiet'}: {d['reason']}")
    if outcome["decisions"]:
        create_table_artifact(
            key="retrain-decisions",
            table=outcome["decisions"],
            description=f"Lineage {outcome['lineage']} on versions {outcome['new_versions']}: {outcome['status']}",
        )
    print(
        f"lineage {outcome['lineage']}: {outcome['status']}, new versions {outcome['new_versions']}, "
        f"model {outcome['model_version_id']}, champion {outcome['champion_model_version_id']}"
    )
    return outcome


if __name__ == "__main__":
    retrain()
