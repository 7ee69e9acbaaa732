"""Every deployment with its schedule, in one place; `curation serve` serves them (flows run in-process)."""

from __future__ import annotations

from datetime import timedelta

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from flows.compare import compare
from flows.curate import curate
from flows.ingest import ingest
from flows.end_to_end import end_to_end
from flows.retrain import retrain

NIGHTLY = "0 2 * * *"  # 02:00 every night
RETRAIN_EVERY = timedelta(minutes=5)  # retrain checks for new chunks this often (it does nothing without any)


def deployments(version: str = "mnist1d") -> list[RunnerDeployment]:
    """The deployments `curation serve` registers: nightly curation, ingest, end-to-end and compare on
    demand, retraining on new chunks."""
    return [
        curate.to_deployment("nightly-curate", cron=NIGHTLY, parameters={"version": version},
                             description="Select a fresh soft-sampling plan for the newest version every night.",
                             tags=["curation"]),
        ingest.to_deployment("ingest", description="Add a data set version (run on demand from the UI).",
                             tags=["curation"]),
        end_to_end.to_deployment("end-to-end",
                                 description="Ingest, score, curate and train in one flow run (the chain dvc repro "
                                             "runs), on demand.", tags=["curation"]),
        compare.to_deployment("compare", parameters={"version": version},
                              description="Compare selection methods with the full-data baseline at equal compute "
                                          "(nested MLflow runs, a table and report pictures).",
                              tags=["curation"]),
        retrain.to_deployment("retrain", interval=RETRAIN_EVERY, parameters={"dataset": version},
                              description="Train the proactive lineage on chunks that landed since its last run.",
                              tags=["curation"]),
    ]


def serve_all(version: str = "mnist1d") -> None:
    """Register the deployments with the Prefect server (PREFECT_API_URL) and run their flows until stopped."""
    serve(*deployments(version))
