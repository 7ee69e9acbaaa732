"""A version whose features are bigger than the memory a run may use, ingested, scored and trained by the real
CLI inside a cgroup memory limit (as a container runs it): every command exits 0 and the kernel kills nothing.

Needs a writable cgroup (v1 here: a child of this process's memory cgroup); skipped with the reason elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation import memory

GIB = 1 << 30
LIMIT = 896 << 20  # the container's memory limit ...
ROWS, WIDTH = 65_536, 4_096  # ... and 1 GiB of float32 features, more than the limit


class MemoryCgroup:
    """A child of this process's memory cgroup with a limit; commands run inside it."""

    def __init__(self, limit: int):
        self.v1 = Path("/sys/fs/cgroup/memory")
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        if self.v1.is_dir():
            own = next(line.split(":", 2)[2] for line in lines if "memory" in line.split(":")[1].split(","))
            self.path = self.v1 / own.lstrip("/") / f"test-{os.getpid()}"
            limit_file, self.events, self.key = "memory.limit_in_bytes", "memory.oom_control", "oom_kill"
        else:
            own = next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))
            self.path = Path("/sys/fs/cgroup") / own.lstrip("/") / f"test-{os.getpid()}"
            limit_file, self.events, self.key = "memory.max", "memory.events", "oom_kill"
        self.path.mkdir()
        try:
            (self.path / limit_file).write_text(str(limit))
        except OSError:  # v2 without the memory controller delegated here
            self.path.rmdir()
            raise

    def run(self, *args: str) -> subprocess.CompletedProcess:
        def enter():
            (self.path / "cgroup.procs").write_text(str(os.getpid()))

        return subprocess.run(args, preexec_fn=enter, capture_output=True, text=True, timeout=600)

    def oom_kills(self) -> int:
        for line in (self.path / self.events).read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == self.key:
                return int(value)
        return 0

    def remove(self) -> None:
        for _ in range(100):  # strays, after a failure: killed, and gone before the folder goes
            pids = (self.path / "cgroup.procs").read_text().split()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), 9)
            time.sleep(0.1)
        self.path.rmdir()


@pytest.fixture
def cgroup():
    try:
        group = MemoryCgroup(LIMIT)
    except (OSError, StopIteration) as exc:
        pytest.skip(f"no writable memory cgroup to run the commands in ({exc})")
    yield group
    group.remove()


def _wide_parquet(path: Path) -> None:
    """Four Gaussian classes in WIDTH dimensions, a train/test column; written 4096 rows at a time."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, WIDTH)).astype(np.float32)
    schema = pa.schema([("features", pa.list_(pa.float32(), WIDTH)), ("label", pa.int64()), ("split", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for _ in range(ROWS // 4096):
            y = rng.integers(0, 4, 4096)
            x = centers[y] + rng.standard_normal((4096, WIDTH), dtype=np.float32)
            features = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), WIDTH)
            split = np.where(rng.random(4096) < 0.8, "train", "test")
            writer.write_table(pa.table({"features": features, "label": y, "split": split}, schema=schema))


def test_a_version_bigger_than_the_memory_limit_is_added_scored_and_trained(home, cgroup, tmp_path):
    probe = cgroup.run(sys.executable, "-c", "from curation.memory import available_bytes; print(available_bytes())")
    assert probe.returncode == 0, probe.stderr
    assert 0 < int(probe.stdout) <= LIMIT  # the limit is what the run plans with, not the machine's free memory

    wide = tmp_path / "wide.parquet"
    _wide_parquet(wide)
    curation = [sys.executable, "-m", "curation"]
    steps = [
        ["data", "add", str(wide), "--name", "wide", "--split-column", "split", "--json"],
        ["score", "wide", "--arch", "mlp", "--epochs", "1"],  # default data path (auto) and workers (2)
        ["train", "wide", "--arch", "mlp", "--epochs", "1", "--json"],
    ]
    for step in steps:
        done = cgroup.run(*curation, *step)
        assert (done.returncode, cgroup.oom_kills()) == (0, 0), (step, done.returncode, done.stderr[-2000:])
        if step[0] == "data":
            info = json.loads(done.stdout)
            assert info["rows"] == ROWS and info["feature_shape"] == [WIDTH]
            assert ROWS * WIDTH * 4 > LIMIT
        if step[0] == "train":  # what auto chose under the limit: both splits streamed, no reader process
            assert json.loads(done.stdout)["data"] == {"train": "stream", "test": "stream", "stream_readers": 0}


def _write(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def test_available_bytes_takes_the_tightest_limit_up_the_tree_less_its_page_cache(tmp_path, monkeypatch):
    """cgroup v2 and v1 trees as the kernel lays them out: every limit on the path counts (a parent's too), and
    what a cgroup uses counts without its page cache (the kernel drops that before it kills) but with its shared
    memory (tmpfs pages are page cache the kernel cannot drop)."""
    monkeypatch.setattr(memory, "CGROUP_ROOT", tmp_path)
    proc = tmp_path / "proc-cgroup"
    free = psutil.virtual_memory().available
    _write(tmp_path, {"cgroup.controllers": "cpu memory"})  # v2: a parent's limit binds its child
    _write(
        tmp_path / "pod",
        {"memory.max": str(GIB), "memory.current": str(GIB // 2), "memory.stat": f"file {GIB // 4}\nshmem {GIB // 8}"},
    )
    _write(tmp_path / "pod" / "app", {"memory.max": "max", "memory.current": str(GIB // 4), "memory.stat": "file 0"})
    proc.write_text("0::/pod/app\n")
    assert memory.available_bytes(proc) == min(free, GIB - (GIB // 2 - GIB // 4 + GIB // 8))

    (tmp_path / "cgroup.controllers").unlink()  # v1: the memory controller's own mount
    v1 = tmp_path / "memory"
    _write(
        v1 / "job",
        {
            "memory.limit_in_bytes": str(2 * GIB),
            "memory.usage_in_bytes": str(GIB),
            "memory.stat": f"total_cache {GIB}\ntotal_shmem {GIB}",
        },
    )
    _write(v1 / "job" / "step", {"memory.limit_in_bytes": str(9223372036854771712), "memory.usage_in_bytes": str(GIB)})
    proc.write_text("4:memory:/job/step\n0::/\n")
    assert memory.available_bytes(proc) == min(free, GIB)

    (v1 / "job" / "memory.limit_in_bytes").write_text("not a number")  # unreadable: the machine's memory
    assert memory.available_bytes(proc) == pytest.approx(free, rel=0.05)
    proc.write_text("4:memory:/elsewhere\n")  # a path the mount does not show (a container): the mount itself
    _write(v1, {"memory.limit_in_bytes": str(GIB), "memory.usage_in_bytes": "0"})
    assert memory.available_bytes(proc) == min(free, GIB)
