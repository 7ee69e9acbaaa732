"""Locks between processes: the one way the project serialises work on a file or folder (the filelock library)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from curation.errors import CurationError


@contextmanager
def locked(path: Path, holder: str, timeout: float) -> Iterator[None]:
    """Hold the lock file ``path`` for the block, waiting at most ``timeout`` seconds (0: fail at once).

    ``holder`` names what works under the lock (e.g. "training run 3"); on timeout a one-line CurationError
    says so. The lock is the kernel's (flock): it is freed when its process ends, however it ends, so a
    timeout always means a live process holds it. The file itself stays.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        waited = f" after {timeout:g} s" if timeout > 0 else ""
        raise CurationError(
            f"{holder} is still at work in another process (it holds {path}{waited})",
            "wait for that process to finish; the lock frees itself when it ends",
        ) from None
    try:
        yield
    finally:
        lock.release()
