"""The Prefect artifacts every flow publishes: a record or rows as a table, pictures as markdown."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact


def record_table(key: str, record: Mapping, description: str) -> None:
    """One record (a version, a plan, a score set) as a two-column field/value table."""
    create_table_artifact(
        key=key, table=[{"field": k, "value": str(v)} for k, v in record.items()], description=description
    )


def rows_table(key: str, rows: Sequence[Mapping], description: str) -> None:
    """Rows with the same columns (a history, a comparison) as a table."""
    create_table_artifact(key=key, table=[dict(r) for r in rows], description=description)


def images(key: str, paths: Mapping[str, Path], description: str, note: str = "") -> None:
    """PNG files shown inline in the Prefect UI (embedded as data URIs: no file server needed)."""
    parts = [note] if note else []
    for name, path in paths.items():
        data = base64.b64encode(Path(path).read_bytes()).decode()
        parts.append(f"### {name.replace('_', ' ')}\n\n![{name}](data:image/png;base64,{data})")
    create_markdown_artifact(key=key, markdown="\n\n".join(parts), description=description)
