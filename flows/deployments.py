"""Every deployment with its schedule, in one place; `curation serve` serves them (flows run in-process)."""

from __future__ import annotations

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from flows.curate import curate
from flows.ingest import ingest

NIGHTLY = "0 2 * * *"  # 02:00 every night


def deployments(version: str = "mnist1d") -> list[RunnerDeployment]:
    """The deployments `curation serve` registers: nightly curation, and ingest on demand."""
    return [
        curate.to_deployment("nightly-curate", cron=NIGHTLY, parameters={"version": version},
                             description="Select a fresh soft-sampling plan for the newest version every night.",
                             tags=["curation"]),
        ingest.to_deployment("ingest", description="Add a data set version (run on demand from the UI).",
                             tags=["curation"]),
    ]


def serve_all(version: str = "mnist1d") -> None:
    """Register the deployments with the Prefect server (PREFECT_API_URL) and run their flows until stopped."""
    serve(*deployments(version))
