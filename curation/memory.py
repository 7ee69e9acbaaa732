"""The memory this process may still use: the machine's available memory, or less under a cgroup limit.

A container (Docker, Kubernetes, systemd, a batch scheduler) limits memory with a cgroup; the machine's
free memory says nothing about that limit, and a process that reads it as its own is killed by the kernel.
``available_bytes`` takes the smaller of the two. In a cgroup, what is in use is the working set (usage less
the inactive page cache, which the kernel reclaims before it kills anything), as the kubelet counts it.
"""

from __future__ import annotations

from pathlib import Path

import psutil

CGROUP_ROOT = Path("/sys/fs/cgroup")
NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63


def available_bytes() -> int:
    """Bytes this process can still allocate without swapping or hitting its cgroup's limit."""
    available = psutil.virtual_memory().available
    for limit, usage, inactive in _cgroup_limits():
        available = min(available, max(0, limit - max(0, usage - inactive)))
    return available


def _cgroup_limits() -> list[tuple[int, int, int]]:
    """(limit, usage, inactive page cache) of each cgroup with a memory limit that holds this process."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:  # not Linux
        return []
    found = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: limits on the cgroup and each of its ancestors
            found += _v2(CGROUP_ROOT, path)
        elif "memory" in controllers.split(","):
            found += _v1(CGROUP_ROOT / "memory", path)
    return found


def _v1(mount: Path, path: str) -> list[tuple[int, int, int]]:
    group = _existing(mount, path)
    stat = _stat(group / "memory.stat")
    limit = stat.get("hierarchical_memory_limit", _number(group / "memory.limit_in_bytes"))
    if limit >= NO_LIMIT:
        return []
    return [(limit, _number(group / "memory.usage_in_bytes"), stat.get("total_inactive_file", 0))]


def _v2(mount: Path, path: str) -> list[tuple[int, int, int]]:
    found, group = [], _existing(mount, path)
    for folder in [group, *group.parents]:
        limit = _number(folder / "memory.max")  # the host's root cgroup has none; a container's root may
        if limit < NO_LIMIT:
            usage = _number(folder / "memory.current")
            found.append((limit, usage, _stat(folder / "memory.stat").get("inactive_file", 0)))
        if folder == mount:
            break
    return found


def _existing(mount: Path, path: str) -> Path:
    """The cgroup's folder; in a container that sees only its own cgroup, the mount itself is that cgroup."""
    group = mount / path.lstrip("/")
    return group if group.is_dir() else mount


def _number(path: Path) -> int:
    try:
        text = path.read_text().strip()
    except OSError:
        return NO_LIMIT
    return NO_LIMIT if text == "max" else int(text)


def _stat(path: Path) -> dict[str, int]:
    try:
        return {key: int(value) for key, value in (line.split() for line in path.read_text().splitlines())}
    except (OSError, ValueError):
        return {}
