"""Where the work runs and how it is followed: a cluster to talk to, named tasks, progress, reruns, memory.

``open_client()`` starts a LocalCluster (one single-threaded worker process per core, no dashboard)
or connects to an existing scheduler (``tcp://host:port``); every worker must have this package
installed and see the project's data directory at the same path. ``Tasks`` submits tasks named
``<stage>-<run>-<part>`` (the names show in the scheduler's logs and dashboard), reports progress as
they finish, and counts tasks that ran more than once (a worker died and the scheduler ran them again
from their inputs) with a scheduler plugin.
"""

from __future__ import annotations

import os
import re
import resource
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from distributed import Client, LocalCluster, as_completed
from distributed.diagnostics.plugin import SchedulerPlugin

from curation.errors import CurationError

CONNECT_TIMEOUT = "10s"
ADDRESS = re.compile(r"^(tcp|tls|inproc|ucx)://[^\s/:]+(:\d+)?/?$")


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` tasks of ``stage`` have finished; ``fraction`` of the whole run is done."""

    stage: str
    done: int
    total: int
    fraction: float


Report = Callable[[Progress], None]


def _quiet(_: Progress) -> None:
    """The default report: nothing."""


@contextmanager
def open_client(scheduler: str | None = None, workers: int | None = None) -> Iterator:
    """A Dask client: on a new LocalCluster (``workers`` processes, default one per core) or on ``scheduler``."""
    if scheduler is None:
        # no dashboard; the scheduler's small HTTP server (health, metrics) on a free port rather than 8787
        with (
            LocalCluster(
                n_workers=workers or os.cpu_count() or 1,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                scheduler_kwargs={"dashboard_address": ":0"},
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    if not ADDRESS.match(scheduler):
        raise CurationError(
            f"scheduler address {scheduler!r} is not like tcp://host:port",
            "give the address the scheduler prints, e.g. tcp://10.0.0.5:8786",
        )
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise CurationError(
            f"cannot reach the Dask scheduler at {scheduler}: {reason}",
            "start it (`dask scheduler`, then `dask worker <address>`) or leave out --scheduler for a local cluster",
        ) from None
    with client:
        yield client


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _usage() -> tuple[float, float]:
    """This process's CPU seconds, and its peak resident MB since the previous call (Linux: VmHWM, then reset
    through clear_refs; elsewhere the peak since the process started)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    try:
        status = Path("/proc/self/status").read_text()
        peak = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024
        Path("/proc/self/clear_refs").write_text("5")
    except (OSError, AttributeError):
        peak = _peak_rss_mb()
    return usage.ru_utime + usage.ru_stime, round(peak, 1)


class Clock:
    """Wall seconds, workers' CPU seconds (user + system, all workers) and the largest worker's peak resident
    memory (MB) per phase of a run; and each worker's peak over the run (for a long-lived cluster: since the
    worker started, or since the previous run reset it).

    On a shared machine the CPU seconds say what a phase costs; on a shared cluster they include
    whatever else its workers ran meanwhile, and a worker that died takes its seconds with it.
    """

    def __init__(self, client):
        self.client, self.seconds, self.cpu_seconds, self.peak_mb = client, {}, {}, {}
        self.worker_peak_mb: dict[str, float] = {}
        self._start()

    def _start(self) -> float:
        """Start a phase; the largest worker peak since the previous start."""
        # a worker lost meanwhile is left out (its restarted process counts from zero): never fail a run over a figure
        usage = self.client.run(_usage, on_error="ignore")
        for worker, (_, peak) in usage.items():
            self.worker_peak_mb[worker] = max(peak, self.worker_peak_mb.get(worker, 0.0))
        self._wall, self._cpu = time.perf_counter(), sum(cpu for cpu, _ in usage.values())
        return max((peak for _, peak in usage.values()), default=0.0)

    def lap(self, phase: str) -> None:
        """Close ``phase`` (started at the previous lap) and start the next."""
        wall, cpu = self._wall, self._cpu
        self.peak_mb[phase] = self._start()
        self.seconds[phase], self.cpu_seconds[phase] = self._wall - wall, self._cpu - cpu


class RerunLog(SchedulerPlugin):
    """Scheduler plugin: how often each task of one run started processing (twice or more = it was rerun)."""

    def __init__(self, run: str):
        self.run = run
        self.starts: Counter = Counter()

    def transition(self, key, start, finish, *args, **kwargs):
        if finish == "processing" and self.run in str(key):
            self.starts[str(key)] += 1

    def reruns(self) -> dict[str, int]:
        return {key: count - 1 for key, count in self.starts.items() if count > 1}


def _reruns(dask_scheduler, name: str) -> dict[str, int]:
    return dask_scheduler.plugins[name].reruns()


class Tasks:
    """One run's tasks on a client: submitted under stage names, waited for with progress, reruns counted."""

    def __init__(self, client, report: Report | None = None):
        self.client = client
        self.run = uuid.uuid4().hex[:10]
        self.report = report or _quiet
        self._plugin = f"curation-reruns-{self.run}"
        client.register_plugin(RerunLog(self.run), name=self._plugin)

    def submit(self, stage: str, part, fn, *args, **kwargs):
        """A future for ``fn(*args)`` named ``<stage>-<run>-<part>``."""
        return self.client.submit(fn, *args, key=f"{stage}-{self.run}-{part}", **kwargs)

    def map(self, stage: str, fn, *columns, **kwargs) -> list:
        """``submit`` for each row of ``columns`` (part = row number)."""
        return [self.submit(stage, part, fn, *args, **kwargs) for part, args in enumerate(zip(*columns))]

    def wait(self, stage: str, futures: list, start: float, stop: float) -> None:
        """Wait for ``futures``, reporting ``stage`` progress between fractions ``start`` and ``stop``; raise the
        first error."""
        total = len(futures)
        self.report(Progress(stage, 0, total, start))
        for done, future in enumerate(as_completed(futures), 1):
            if future.status == "error":
                future.result()
            self.report(Progress(stage, done, total, start + (stop - start) * done / max(total, 1)))

    def note(self, stage: str, fraction: float) -> None:
        """Report a step that is not a set of tasks (e.g. a few small round trips)."""
        self.report(Progress(stage, 0, 1, fraction))

    def gather(self, futures):
        return self.client.gather(futures)

    def reruns(self) -> dict[str, int]:
        """Tasks of this run that ran more than once, and how many extra times."""
        return self.client.run_on_scheduler(_reruns, name=self._plugin)

    def close(self) -> None:
        self.client.unregister_scheduler_plugin(self._plugin)
