"""docs/architecture.md names every module of the library, the flows and the models, and no module that is gone."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRY = re.compile(r"^( *)([\w.]+(?:/|\.py)(?:, [\w.]+(?:/|\.py))*)(?:\s|$)")
PACKAGES = ("curation", "flows", "models")
OPAQUE = ("curation/catalog/migrations/",)  # named as a folder: its files are Alembic's revisions


def documented() -> set[str]:
    """The module paths the doc's tree names (two spaces of indentation per folder level)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("## Modules", 1)[1].split("```", 2)[1]
    folders: list[str] = []
    paths = set()
    for line in block.splitlines():
        match = ENTRY.match(line)
        if not match:
            continue  # a description continued from the line above
        depth = len(match.group(1)) // 2
        del folders[depth:]
        for name in match.group(2).split(", "):
            if name.endswith("/"):
                folders.append(name)
            else:
                paths.add("".join(folders) + name)
    return paths


def modules() -> set[str]:
    found = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            if not relative.startswith(OPAQUE) and "__pycache__" not in relative:
                found.add(relative)
    return found


def test_every_module_is_in_the_architecture_doc_and_every_named_module_exists():
    named, present = documented(), modules()
    missing = {m for m in present - named if not m.endswith("/__init__.py")}  # a package's __init__ may go unnamed
    assert not missing, f"modules the doc does not name: {sorted(missing)}"
    assert not named - present, f"the doc names modules that do not exist: {sorted(named - present)}"


def test_the_doc_parser_reads_folders_and_lists():
    assert {
        "curation/cli.py",
        "curation/data/store.py",
        "curation/selection/coresets.py",
        "curation/selection/knn.py",
        "models/resnet2d.py",
        "flows/events.py",
    } <= documented()
