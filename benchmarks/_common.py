"""What every benchmark shares: the machine record, medians of repeated timings, the result file."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    import psutil
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30),
        "gpu": gpu,
        "torch": torch.__version__.split("+")[0],
        "python": platform.python_version(),
    }


def git_rev() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
        )
    except OSError:  # no git (a bare GPU machine)
        return None
    return result.stdout.strip() or None


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def median_seconds(fn, repeats: int = 3) -> tuple[float, object]:
    """Median wall time of ``fn()`` over ``repeats`` runs, and the last run's return value."""
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def tree_pss_mb(pid: int) -> float:
    """Summed proportional set size of a process and its descendants (shared pages counted once in all)."""
    import psutil  # imported here: the GPU machine's python may lack it

    total = 0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_full_info().pss
    return total / 2**20


def measured(command: list[str], env: dict, watch: dict[str, int] | None = None) -> dict:
    """Run a CLI command; its wall seconds, peak tree PSS (MB), JSON output and, for each process tree in
    ``watch`` (name -> pid, e.g. the servers it uses), that tree's peak PSS while the command ran."""
    tick = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, peaks = 0.0, dict.fromkeys(watch or {}, 0.0)
    while proc.poll() is None:
        peak = max(peak, tree_pss_mb(proc.pid))
        for name, pid in (watch or {}).items():
            peaks[name] = max(peaks[name], tree_pss_mb(pid))
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{err[-2000:]}")
    seconds = round(time.perf_counter() - tick, 1)
    return {"seconds": seconds, "peak_mb": round(peak, 1), "output": out} | {
        f"{name} peak_mb": round(mb, 1) for name, mb in peaks.items()
    }


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes, under a minute (smoke test)")
    p.add_argument("--out", type=Path, default=None, help="result file (default benchmarks/results/<name>.json)")
    return p


def write_result(
    name: str,
    params: dict,
    results: list[dict],
    ratios: dict,
    targets: dict,
    met: bool,
    notes: str = "",
    out: Path | None = None,
    quick: bool = False,
) -> Path:
    """Write the result JSON (quick runs go to <name>.quick.json so they never replace a full result)."""
    payload = {
        "benchmark": name,
        "git_rev": git_rev(),
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "params": params,
        "results": results,
        "ratios": ratios,
        "targets": targets,
        "met": met,
        "quick": quick,
        "notes": notes,
    }
    path = out or RESULTS / (f"{name}.quick.json" if quick else f"{name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    return path
