"""The `end-to-end` flow: ingest -> score -> curate -> train in one flow run, the chain `dvc repro` runs.

The stages are the `ingest`, `score`, `curate` and `train` flows' own tasks and artifacts, run inside
this one flow run instead of four: what a user schedules to refresh a curated model end to end, at one
flow run's orchestration cost (docs/benchmarks.md, orchestration overhead).
"""

from __future__ import annotations

from prefect import flow

from curation.choices import Device
from flows.curate import curate_steps
from flows.ingest import ingest_steps
from flows.score import score_steps
from flows.train import train_steps


@flow(name="end-to-end", log_prints=True)
def end_to_end(
    source: str = "mnist1d",
    samples: int | None = None,
    data_seed: int | None = None,
    score_epochs: int = 3,
    method: str = "soft",
    params: dict | None = None,
    arch: str | None = None,
    epochs: int | None = None,
    seed: int = 0,
    device: Device = Device.auto,
) -> dict:
    """Add ``source`` as a version (idempotent), score it, select with ``method`` and train on the plan.

    Returns the version, score set, plan and training outcome records.
    """
    version = ingest_steps(source, samples=samples, seed=data_seed)
    ref = str(version["id"])
    scores = score_steps(ref, epochs=score_epochs, seed=seed)
    plan = curate_steps(ref, method, params, scores["id"])
    outcome = train_steps(ref, {"arch": arch, "epochs": epochs, "seed": seed, "device": device}, plan["id"])
    return {"version": version, "score_set": scores, "plan": plan, "outcome": outcome}


if __name__ == "__main__":
    end_to_end()
