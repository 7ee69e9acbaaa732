"""Files written whole or not at all: the one way the project replaces a file or moves one into place.

A file is written under a unique hidden name in its target's folder, flushed to disk (fsync), renamed over
the target (``os.replace``, atomic on one file system), and the folder is flushed so the rename survives a
power cut. On any error the temporary file is removed; a killed process leaves at most a hidden
``.<name>.<random>.tmp`` beside the target, never a half-written target.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary path)``, then put the file at ``path`` (see the module docstring)."""
    return write_named(path.parent, write, lambda _: path.name, hint=path.name)


def write_named(folder: Path, write: Callable[[Path], None], name: Callable[[Path], str], hint: str = "file") -> Path:
    """``write_atomic`` for a file named after what was written: ``name(temporary path)`` (e.g. its md5) gives
    its name in ``folder``; returns the final path."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(folder, hint)
    try:
        write(tmp)
        target = folder / name(tmp)
        move_into_place(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)  # a no-op once renamed
    return target


def temporary_path(folder: Path, hint: str = "tmp") -> Path:
    """A unique hidden name in ``folder`` for a file or folder that is later moved into place there."""
    return folder / f".{hint}.{uuid.uuid4().hex}.tmp"


def move_into_place(source: Path, target: Path) -> None:
    """Rename a finished file or folder (``source``, on the same file system) to ``target``, durably.

    A file's bytes (a folder's files and the folder itself) are flushed before the rename. A file replaces an
    existing ``target``; a folder only replaces a missing or empty one.
    """
    for path in sorted(source.iterdir()) + [source] if source.is_dir() else [source]:
        _fsync(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    _fsync(target.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
