"""The events the flows emit (the library never imports Prefect): a new data set version, which starts
the `retrain` deployment for that data set (flows/deployments.py: `retrain_trigger`)."""

from __future__ import annotations

from prefect.events import emit_event

from curation.data.versions import VersionInfo

VERSION_ADDED = "curation.version.added"
DATASET_RESOURCE = "curation.dataset"  # resource id: curation.dataset.<name>


def version_added(info: VersionInfo) -> None:
    """Tell the Prefect server a new version of ``info.dataset`` was registered (not sent for a known one)."""
    if not info.created:
        return
    emit_event(
        VERSION_ADDED,
        resource={"prefect.resource.id": f"{DATASET_RESOURCE}.{info.dataset}", "prefect.resource.name": info.dataset},
        related=[
            {
                "prefect.resource.id": f"curation.version.{info.id}",
                "prefect.resource.role": "version",
                "prefect.resource.name": info.ref,
            }
        ],
        payload={
            "dataset": info.dataset,
            "version_id": info.id,
            "content_hash": info.content_hash,
            "rows": info.rows,
            "parent_id": info.parent_id,
        },
    )
