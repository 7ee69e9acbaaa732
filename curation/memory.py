"""The memory this process may still use: the machine's available memory, or less under a cgroup limit.

A container (Docker, Kubernetes, systemd, a batch scheduler) limits memory with a cgroup; the machine's
free memory says nothing about that limit, and a process that reads it as its own is killed by the kernel.
``available_bytes`` takes the smaller of the two. Under each limit (the cgroup's own and its ancestors'), what
is in use is the cgroup's usage less its page cache, which the kernel reclaims before it kills anything: a
file just read (a version, a score set) does not count against what a run may allocate. Shared memory
(tmpfs, /dev/shm: DataLoader workers hand their batches over through it) is page cache that cannot be
dropped, so it still counts.
"""

from __future__ import annotations

from pathlib import Path

import psutil

CGROUP_ROOT = Path("/sys/fs/cgroup")
NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63
# per version: the limit, the usage, and the page cache's and shared memory's keys in memory.stat (v1: over the
# hierarchy)
FILES = {
    1: ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_cache", "total_shmem"),
    2: ("memory.max", "memory.current", "file", "shmem"),
}


def available_bytes(proc_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """Bytes this process can still allocate without swapping or reaching a cgroup's limit."""
    available = psutil.virtual_memory().available
    try:
        limits = _cgroup_limits(proc_cgroup.read_text())
    except (OSError, ValueError):  # not Linux, or a cgroup file in a form this does not know: the machine's
        limits = []
    for limit, in_use in limits:
        available = min(available, max(0, limit - in_use))
    return available


def _cgroup_limits(proc_cgroup: str) -> list[tuple[int, int]]:
    """(limit, bytes in use) of each cgroup with a memory limit on this process's path, up to the mount."""
    found = []
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "" and (CGROUP_ROOT / "cgroup.controllers").is_file():  # v2, the unified hierarchy
            found += _limits(CGROUP_ROOT, path, 2)
        elif "memory" in controllers.split(","):
            found += _limits(CGROUP_ROOT / "memory", path, 1)
    return found


def _limits(mount: Path, path: str, version: int) -> list[tuple[int, int]]:
    limit_file, usage_file, cache_key, shared_key = FILES[version]
    group = mount / path.lstrip("/")
    if not group.is_dir():  # a container that sees only its own cgroup: the mount is that cgroup
        group = mount
    found = []
    for folder in [group, *group.parents]:
        limit = _number(folder / limit_file)  # the host's root has none; a container's root may
        if limit < NO_LIMIT:
            stat = _stat(folder / "memory.stat")
            reclaimable = stat.get(cache_key, 0) - stat.get(shared_key, 0)
            found.append((limit, max(0, _number(folder / usage_file, missing=0) - reclaimable)))
        if folder == mount:
            break
    return found


def _number(path: Path, missing: int = NO_LIMIT) -> int:
    try:
        text = path.read_text().strip()
    except OSError:
        return missing
    return NO_LIMIT if text == "max" else int(text)


def _stat(path: Path) -> dict[str, int]:
    try:
        return {key: int(value) for key, value in (line.split() for line in path.read_text().splitlines())}
    except OSError:
        return {}
