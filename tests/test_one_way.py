"""One way per job: file replacement, inter-process locks and equal-compute epochs each have one definition."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from curation.errors import CurationError
from curation.files import write_atomic, write_named
from curation.locks import locked
from curation.metrics.ledger import equal_compute_epochs

ROOT = Path(__file__).resolve().parents[1]
# pattern -> the only module allowed to contain it
SINGLE = {
    r"\bos\.(replace|rename)\(|\.tmp\b[\"']|\.partial\b|\bfsync\(": "curation/files.py",
    r"\bfcntl\b|\bflock\(|\bFileLock\b|\bimport filelock\b|\bfrom filelock\b": "curation/locks.py",
    r"\b(ceil|round)\([^)]*epochs": "curation/metrics/ledger.py",  # equal_compute_epochs
}


def _sources():
    for folder in ("curation", "flows", "benchmarks", "models"):
        yield from sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("pattern", SINGLE)
def test_helpers_have_one_definition(pattern):
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in _sources()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(pattern, line) and str(path.relative_to(ROOT)) != SINGLE[pattern]
    ]
    assert not found, f"use {SINGLE[pattern]} instead:\n" + "\n".join(found)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "sub" / "a.json"
    write_atomic(path, lambda tmp: tmp.write_text("old"))

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(path, fail)
    assert path.read_text() == "old"
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]


def test_a_file_named_by_its_content(tmp_path):
    target = write_named(tmp_path, lambda tmp: tmp.write_bytes(b"abc"), lambda tmp: f"{len(tmp.read_bytes())}.bin")
    assert target == tmp_path / "3.bin" and target.read_bytes() == b"abc"
    assert [p.name for p in tmp_path.iterdir()] == ["3.bin"]


def test_a_killed_writer_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "a.bin"
    write_atomic(path, lambda tmp: tmp.write_bytes(b"old"))
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from curation.files import write_atomic

        def write(tmp):
            tmp.write_bytes(b"new, half")
            os.kill(os.getpid(), signal.SIGKILL)

        write_atomic(Path({str(path)!r}), write)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -9
    assert path.read_bytes() == b"old"


def test_a_held_lock_times_out_with_one_line(tmp_path):
    lock = tmp_path / "lock"
    with (
        locked(lock, "training run 3", timeout=0),
        pytest.raises(CurationError) as caught,
        locked(lock, "training run 3", timeout=0.2),
    ):
        pass
    assert "training run 3" in str(caught.value) and str(lock) in str(caught.value) and "\n" not in str(caught.value)
    with locked(lock, "training run 3", timeout=0):  # released after the block, and after the error
        pass


def test_a_lock_is_freed_when_its_process_dies(tmp_path):
    lock = tmp_path / "lock"
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from curation.locks import locked

        with locked(Path({str(lock)!r}), "test", timeout=0):
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -9 and lock.exists()
    with locked(lock, "test", timeout=0):
        pass


def test_equal_compute_epochs_reach_the_baselines_compute_and_no_more_than_one_epoch_beyond():
    assert equal_compute_epochs(2, 0.5) == 4 and equal_compute_epochs(10, 0.1) == 100  # exact, float error ignored
    assert equal_compute_epochs(10, 0.3) == 34  # 33 epochs would be 99% of the baseline's compute
    assert equal_compute_epochs(7, 2 / 3, warmup=1) == 10  # one full epoch, then 6 / (2/3) = 9
    assert equal_compute_epochs(1, 1.5) == 1
    for epochs in range(1, 30):
        for ratio in (0.07, 0.1, 0.25, 0.3, 1 / 3, 0.5, 0.9, 1.0):
            got = equal_compute_epochs(epochs, ratio)
            assert got * ratio >= epochs - 1e-9 and (got - 1) * ratio < epochs - 1e-9
    with pytest.raises(CurationError):
        equal_compute_epochs(3, 0)
