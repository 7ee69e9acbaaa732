"""Catalog load: 16 processes registering versions, plans and runs in one catalog, against 1 process.

`python -m benchmarks.catalog_load` runs, side by side in one invocation, one process and then 16 concurrent
processes doing the same total work through the catalog's own API (`Catalog.add_version`, a SelectionPlan
row, a training run started then finished with its model row), on SQLite (WAL) and on PostgreSQL (a fresh
schema on CURATION_TEST_PG_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/test). It reports rows
per second, per-operation latency p50/p95, errors (any exception reaching the caller, "database is locked"
included) and checks that no row was lost or duplicated.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks._common import parser, write_result

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ROWS_PER_ROUND = 4  # a version, a plan, a training run and its model (the 4 data sets once, not counted)


def _round(catalog, worker: int, i: int, latencies: dict) -> None:
    """One round: register a version, a plan on it, and a training run with its model; each op timed."""
    from curation.catalog import ModelVersion, SelectionPlan, TrainingRun

    t = time.perf_counter()
    version, created = catalog.add_version(
        f"load{worker % 4}",
        content_hash=uuid.uuid4().hex,
        path=f"data/load/{worker}-{i}.parquet",
        rows=100,
        num_features=3,
        feature_shape=[3],
        schema={"features": "float32"},
        classes=[0, 1],
        splits={"train": 100},
        source={"kind": "benchmark", "worker": worker, "i": i},
    )
    assert created
    latencies["version"].append(time.perf_counter() - t)
    t = time.perf_counter()
    with catalog.session() as s:
        s.add(
            SelectionPlan(
                version_id=version.id,
                method="uniform",
                params={"budget": 10},
                budget=10,
                ratio=0.1,
                seed=i,
                path=None,
                content_hash=None,
                ledger={},
            )
        )
    latencies["plan"].append(time.perf_counter() - t)
    t = time.perf_counter()
    with catalog.session() as s:  # as curation.training.records does (not imported: it would load torch)
        run = TrainingRun(version_id=version.id, plan_id=None, architecture="mlp", params={"i": i}, status="RUNNING")
        s.add(run)
    with catalog.session() as s:
        s.get(TrainingRun, run.id).status = "FINISHED"
        s.add(
            ModelVersion(
                run_id=run.id,
                name="load-mlp",
                path=f"runs/{run.id}/model.pt",
                content_hash=uuid.uuid4().hex,
                metrics={},
                registry_version=None,
            )
        )
    latencies["run"].append(time.perf_counter() - t)


def _worker(url: str, worker: int, rounds: int, ready, start, queue) -> None:
    from curation.catalog import Catalog

    latencies = {"version": [], "plan": [], "run": []}
    errors: list[str] = []
    catalog = Catalog(url)
    catalog.versions()  # connected before the start signal
    ready.put(worker)
    start.wait()
    for i in range(rounds):
        try:
            _round(catalog, worker, i, latencies)
        except Exception as exc:  # noqa: BLE001 - every error is counted and reported, none hidden
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
    queue.put((latencies, errors))


def _rows(url: str) -> dict:
    from sqlalchemy import func, select

    from curation.catalog import Catalog, DatasetVersion, ModelVersion, SelectionPlan, TrainingRun

    with Catalog(url).session() as s:
        counts = {
            t.__tablename__: s.scalar(select(func.count()).select_from(t))
            for t in (DatasetVersion, SelectionPlan, TrainingRun, ModelVersion)
        }
        counts["unfinished_runs"] = s.scalar(
            select(func.count()).select_from(TrainingRun).where(TrainingRun.status != "FINISHED")
        )
        counts["distinct_hashes"] = s.scalar(select(func.count(func.distinct(DatasetVersion.content_hash))))
    return counts


def _pct(values: list[float], q: float) -> float:
    return (
        round(1000 * statistics.quantiles(values, n=100, method="inclusive")[q - 1], 2)
        if len(values) > 1
        else round(1000 * values[0], 2)
    )


def measure(backend: str, url: str, processes: int, rounds: int) -> dict:
    """``processes`` workers doing ``rounds`` rounds each on a fresh catalog at ``url``."""
    from curation.catalog import Catalog

    Catalog(url)  # migrate once, before the clock starts
    ctx = mp.get_context("spawn")
    ready, start, queue = ctx.Queue(), ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(url, w, rounds, ready, start, queue)) for w in range(processes)]
    for p in workers:
        p.start()
    for _ in workers:  # every worker has imported and connected: the clock measures catalog work only
        ready.get(timeout=600)
    t0 = time.perf_counter()
    start.set()
    outcomes = [queue.get(timeout=1800) for _ in workers]
    seconds = time.perf_counter() - t0
    for p in workers:
        p.join()
    latencies = {k: [x for lat, _ in outcomes for x in lat[k]] for k in ("version", "plan", "run")}
    errors = [e for _, errs in outcomes for e in errs]
    counts = _rows(url)
    rounds_total = processes * rounds
    intact = (
        counts["dataset_versions"]
        == counts["distinct_hashes"]
        == counts["selection_plans"]
        == counts["training_runs"]
        == counts["model_versions"]
        == rounds_total - len(errors)
        and counts["unfinished_runs"] == 0
    )
    row = {
        "backend": backend,
        "processes": processes,
        "rounds": rounds_total,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rounds_total * ROWS_PER_ROUND / seconds, 1),
        "errors": len(errors),
        "rows_intact": intact,
    }
    for op, values in latencies.items():
        row[f"{op}_p50_ms"], row[f"{op}_p95_ms"] = _pct(values, 50), _pct(values, 95)
    if errors:
        row["first_error"] = errors[0]
    print(row, flush=True)
    return row


def _pg_schema(base: str) -> tuple[str, callable]:
    """A fresh schema on the server and a URL using it; the callable drops it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"load_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))  # a generated identifier, not user input

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), drop


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, default=16)
    p.add_argument("--rounds", type=int, default=None, help="rounds per process in the concurrent run")
    p.add_argument("--pg-url", default=os.environ.get("CURATION_TEST_PG_URL", DEFAULT_PG))
    p.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = p.parse_args()
    rounds = args.rounds or (3 if args.quick else 25)
    total = rounds * args.processes
    results = []
    with tempfile.TemporaryDirectory(prefix="catalog-load-") as tmp:
        for processes in (1, args.processes):
            url = f"sqlite:///{Path(tmp) / f'sqlite-{processes}.db'}"
            results.append(measure("sqlite", url, processes, total // processes))
    if not args.no_pg:
        for processes in (1, args.processes):
            url, drop = _pg_schema(args.pg_url)
            try:
                results.append(measure("postgresql", url, processes, total // processes))
            finally:
                drop()
    by = {(r["backend"], r["processes"]): r for r in results}
    ratios = {}
    for backend in dict.fromkeys(r["backend"] for r in results):
        one, many = by[(backend, 1)], by[(backend, args.processes)]
        ratios[f"{backend}_throughput_{args.processes}_vs_1"] = round(many["rows_per_s"] / one["rows_per_s"], 2)
    ratios["errors"] = sum(r["errors"] for r in results)
    ratios["rows_intact"] = all(r["rows_intact"] for r in results)
    targets = {"errors": "== 0", "rows_intact": "true"}
    met = ratios["errors"] == 0 and ratios["rows_intact"]
    notes = (
        f"{args.processes} processes x {rounds} rounds vs 1 process x {total} rounds; a round is "
        f"{ROWS_PER_ROUND} rows (version, plan, run, model) in 4 transactions (a run is started, then "
        "finished). "
        "Throughput ratios are context, not targets: SQLite serialises writers (WAL + busy timeout), and "
        f"this machine has {os.cpu_count()} cores for {args.processes} processes."
    )
    write_result(
        "catalog_load",
        {
            "processes": args.processes,
            "rounds_per_process": rounds,
            "total_rounds": total,
            "backends": sorted({r["backend"] for r in results}),
        },
        results,
        ratios,
        targets,
        met,
        notes,
        out=args.out,
        quick=args.quick,
    )


if __name__ == "__main__":
    main()
