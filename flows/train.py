"""The `train` flow: train a model on a data set version, tracked in MLflow and the catalog."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from curation.choices import Device
from curation.config import load_settings
from curation.training.config import TrainConfig
from curation.training.run import train_version
from flows._artifacts import rows_table

HISTORY_COLUMNS = ("epoch", "accuracy", "loss", "coverage", "backward_samples", "flops", "seconds")


@task(name="train-model", cache_policy=NO_CACHE)
def train_model(version: str, config: dict, plan: str | int | None, resume: bool, baseline: int | None) -> dict:
    outcome = train_version(
        load_settings(), version, TrainConfig.make(**config), plan, resume=resume, baseline=baseline
    )
    return outcome.to_dict()


@flow(name="train", log_prints=True)
def train(
    version: str = "mnist1d",
    arch: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    device: Device = Device.auto,
    plan: str | int | None = None,
    resume: bool = False,
    baseline: int | None = None,
) -> dict:
    """Train ``arch`` on ``version`` with an optional plan (catalog id or Parquet file); returns the outcome."""
    config = {"arch": arch, "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "device": device}
    return train_steps(version, config, plan, resume, baseline)


def train_steps(
    version: str, config: dict, plan: str | int | None = None, resume: bool = False, baseline: int | None = None
) -> dict:
    """The train flow's task and history artifact, inside the calling flow (``train`` or ``end-to-end``)."""
    outcome = train_model(version, config, plan, resume, baseline)
    rows_table(
        "training-history",
        [{k: r[k] for k in HISTORY_COLUMNS} for r in outcome["history"]],
        f"Run {outcome['run_id']} ({outcome['config']['arch']} on {outcome['version']}): accuracy, "
        f"coverage and cumulative compute per epoch; MLflow run {outcome['mlflow_run_id']}",
    )
    summary = outcome["summary"]
    print(
        f"run {outcome['run_id']}: accuracy {summary['final_accuracy']:.4f} (best {summary['best_accuracy']:.4f}),"
        f" {summary['total_flops']:.3g} FLOPs, model {outcome['registered_model']} v{outcome['registry_version']}"
    )
    return outcome


if __name__ == "__main__":
    train()
