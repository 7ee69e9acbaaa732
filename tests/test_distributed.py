"""Distributed pairwise selection on a real 2-worker LocalCluster: graph, bounding, quality, faults, bad input."""

import json
import os
import signal
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from curation.cli import app
from curation.data.store import content_md5
from curation.errors import CurationError

distributed = pytest.importorskip("distributed")

from curation.distributed import order  # noqa: E402 - after the skip: the package needs distributed
from curation.distributed.blocks import load_blocks  # noqa: E402
from curation.distributed.bounding import bound  # noqa: E402
from curation.distributed.cells import apportion, group_cells  # noqa: E402
from curation.distributed.cluster import Tasks  # noqa: E402
from curation.distributed.graph import build_graph, scan  # noqa: E402
from curation.distributed.partition_greedy import round_plan, schedule  # noqa: E402
from curation.distributed.selection import Params, select  # noqa: E402
from curation.distributed.source import Source  # noqa: E402
from curation.selection.knn import knn_graph  # noqa: E402
from curation.selection.pairwise import density, gains, greedy, objective  # noqa: E402

runner = CliRunner()
SPANS = [(0, 1)] * 4


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def clustered(n: int, seed: int = 0, dim: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(40, dim)) * 3
    label = rng.integers(0, 40, n)
    return (centers[label] + rng.normal(size=(n, dim)) * rng.uniform(0.3, 1.5, 40)[label, None]).astype(np.float32)


def mnist1d_features(n: int) -> np.ndarray:
    from curation.data.sources import mnist1d

    table = mnist1d(samples=n).table
    return np.stack(table.column("features").to_numpy(zero_copy_only=False)).astype(np.float32)


def write_embeddings(path, x, ids=None, row_group_size=400, column="embedding", extra=None):
    ids = np.arange(len(x), dtype=np.int64) * 7 if ids is None else ids
    columns = {
        "sample_id": pa.array(ids, pa.int64()),
        column: pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1]),
    }
    pq.write_table(pa.table({**columns, **(extra or {})}), path, row_group_size=row_group_size)
    return Source.of(path, column)


def edge_graph(graph) -> sp.csr_matrix:
    """The stored graph as one CSR (test-only: small instances)."""
    tables = [pq.read_table(graph.edges(j)) for j in range(graph.parts)]
    n = int(graph.offsets[-1])
    src, dst, sim = (np.concatenate([t.column(c).to_numpy() for t in tables]) for c in ("src", "dst", "sim"))
    return sp.csr_matrix((sim.astype(np.float64), (src, dst)), shape=(n, n))


def test_graph_built_by_partitions_is_knn_graph(client, tmp_path):
    x = clustered(3000)
    source = write_embeddings(tmp_path / "e.parquet", x)
    built = {}
    for name, exact_max in (("exact", 3000), ("ivf", 0)):
        tasks = Tasks(client)  # task names are per run
        found = scan(tasks, source, None, 700, 64, 0, (0, 1))
        assert len(found.ranges) == 5 and found.n == 3000
        built[name] = build_graph(tasks, source, found, tmp_path / name, 10, 64, None, 0.99, 1500, 0, SPANS, exact_max)
        tasks.close()
    exact, approx = built["exact"], built["ivf"]
    assert len(list((tmp_path / "ivf" / "shards").iterdir())) == 3  # 700 + 700, 700 + 700, 600 rows
    reference = knn_graph(x, 10)
    got = edge_graph(exact)
    assert exact.exact and not approx.exact and approx.recall >= 0.99 and approx.nprobe in (8, 16, 32, 64)
    assert (got != 0).sum() == reference.nnz and abs(got - reference).max() < 1e-6  # float32 similarities
    assert abs(got - got.T).max() == 0
    ivf = edge_graph(approx)
    same = ivf.multiply(reference != 0).nnz / reference.nnz
    assert same > 0.97 and abs(ivf - ivf.T).max() == 0


def test_order_statistics_are_exact(client, monkeypatch):
    monkeypatch.setattr(order, "GATHER_MAX", 50)  # force sampling rounds
    rng = np.random.default_rng(5)
    arrays = [np.sort(np.round(rng.normal(size=size), 2)) for size in (900, 0, 1500, 40)]  # many ties
    parts = [client.submit(lambda a: a, a, pure=False) for a in arrays]
    every = np.sort(np.concatenate(arrays))[::-1]
    for k in (1, 2, 17, 1200, len(every)):
        assert order.kth_largest(client, parts, k) == every[k - 1]
    assert order.kth_largest(client, parts, len(every) + 1) == -np.inf
    assert order.kth_largest(client, parts, 0) == np.inf


def test_round_plan_halves_partitions_and_ends_on_the_budget():
    for candidates, open_slots, cap, slack in [
        (10_000_000, 1_000_000, 1_000_000, 1.0),
        (5000, 500, 1000, 1.0),
        (4000, 100, 250, 0.5),
        (900, 800, 1000, 1.0),
        (50_000, 30_000, 7000, 2),
    ]:
        rounds = schedule(candidates, open_slots, cap, slack)
        assert rounds[-1][1:] == (open_slots, True) and not any(final for _, _, final in rounds[:-1])
        floor_parts = -(-int(np.ceil((1 + slack) * open_slots)) // cap)
        for (parts, _, _), (next_parts, _, _) in zip(rounds, rounds[1:]):
            assert next_parts <= max(-(-parts // 2), floor_parts)
        remaining = candidates
        for parts, keep, final in rounds:
            assert parts == -(-remaining // cap) and (keep == open_slots if final else keep < remaining)
            remaining = keep
    assert round_plan(10_000_000, 1_000_000, 1_000_000, 1.0) == (10, 5_000_000, False)
    assert round_plan(2_000_000, 1_000_000, 1_000_000, 1.0) == (2, 1_000_000, True)


def test_cells_are_grouped_in_balanced_neighbourhoods():
    rng = np.random.default_rng(0)
    fine = rng.normal(size=(400, 8))
    counts = rng.integers(0, 60, 400)
    for parts in (1, 2, 3, 7):
        group = group_cells(fine, counts, parts)
        sizes = np.bincount(group, weights=counts, minlength=parts)
        assert len(sizes) == parts and sizes.sum() == counts.sum()
        assert sizes.max() <= counts.sum() / parts + 2 * counts.max()
    assert apportion(10, np.array([3, 0, 3, 4])).tolist() == [3, 0, 3, 4]
    assert apportion(7, np.array([10, 0, 5])).tolist() == [5, 0, 2]


def test_bounding_decisions_are_those_of_the_exact_greedy(client, tmp_path):
    x = clustered(2500, seed=3)
    source = write_embeddings(tmp_path / "e.parquet", x)
    tasks = Tasks(client)
    found = scan(tasks, source, None, 600, 64, 0, (0, 1))
    graph = build_graph(tasks, source, found, tmp_path / "g", 10, 64, 8, 0.99, 10**6, 0, SPANS)
    blocks = load_blocks(tasks, graph, None, found.ranges, (0, 1))
    alpha, beta, k = 1.0, 0.003, 250
    bounded = bound(tasks, blocks, found.n, k, alpha, beta, (0, 1))
    state = np.concatenate(tasks.gather(bounded.states))
    tasks.close()
    full = edge_graph(graph)
    utility = density(full)
    passes = bounded.passes
    assert len(passes) >= 2 and bounded.selected > 0 and bounded.discarded > 0  # an instance bounding works on
    assert (bounded.selected, bounded.discarded) == ((state > 0).sum(), (state < 0).sum())
    for record in passes:
        step = record["pass"]
        before = (state != 0) & (np.abs(state) < step)  # the decisions in force when the pass ran
        chosen, dropped = before & (state > 0), before & (state < 0)
        candidates = np.flatnonzero(~chosen & ~dropped)
        open_slots = k - chosen.sum()
        assert open_slots == record["open_slots"]
        start = gains(full[candidates], utility[candidates], chosen, alpha, beta)
        picked, _ = greedy(full[candidates][:, candidates], start, open_slots, 1.0, beta, seed=step)
        picked = set(candidates[picked].tolist())
        assert set(np.flatnonzero(state == step).tolist()) <= picked
        assert not set(np.flatnonzero(state == -step).tolist()) & picked
    # every discarded point's max gain (given all that was selected) is below the final threshold
    highest = gains(full, utility, state > 0, alpha, beta)
    assert highest[state < 0].max() < passes[-1]["discard_below"]


@pytest.mark.parametrize("data", ["mnist1d", "clustered"])
def test_distributed_objective_is_within_2_percent_of_centralized_greedy(client, tmp_path, data):
    x = mnist1d_features(4000) if data == "mnist1d" else clustered(4000, seed=1)
    source = write_embeddings(tmp_path / "e.parquet", x)
    params = Params.of({"budget": 0.1, "partition_rows": 900, "max_candidates": 1000})
    chosen = select(client, source, None, params, tmp_path / "work", tmp_path / "plan")
    assert chosen.partitions == 5 and len(chosen.rounds) >= 3 and chosen.rounds[0]["partitions"] >= 4
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())
    ids = pq.read_table(tmp_path / "plan").column("sample_id").to_numpy()
    assert len(ids) == len(set(ids)) == chosen.k == 400
    graph = knn_graph(x, 10)
    utility = density(graph)
    central = objective(graph, utility, greedy(graph, utility, chosen.k, 1.0, 1.0)[0], 1.0, 1.0)
    ours = objective(graph, utility, ids // 7, 1.0, 1.0)
    assert ours == pytest.approx(chosen.objective, rel=1e-5)  # the objective the workers summed
    assert ours / central >= 0.98


@pytest.fixture
def project(home, monkeypatch):
    """A project without DVC tracking (not what is tested here), and a mnist1d version of 2500 samples."""
    from curation.config import load_settings
    from curation.data.sources import mnist1d
    from curation.data.versions import add_version

    monkeypatch.setenv("CURATION_DVC", "false")
    settings = load_settings()
    return settings, add_version(settings, mnist1d(samples=2500))


def test_cli_engine_dask_registers_a_partitioned_plan_tracked_in_mlflow(project):
    import mlflow
    from curation.selection.plans import TablePlan
    from curation.selection.run import plans

    settings, version = project
    result = runner.invoke(
        app,
        [
            "select",
            str(version.id),
            "-m",
            "pairwise",
            "--engine",
            "dask",
            "--budget",
            "0.1",
            "--seed",
            "3",
            "-p",
            "source=features",
            "-p",
            "partition_rows=700",
            "-p",
            "max_candidates=800",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert (info["method"], info["budget"], info["seed"]) == ("pairwise-distributed", 200, 3)
    assert info["params"]["partition_rows"] == 700 and [p.id for p in plans(settings)] == [info["id"]]
    folder = settings.home / info["path"]
    assert folder.parent == settings.data_path / "plans" and content_md5(folder) == info["content_hash"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]  # the 4th range holds test rows only
    ids = TablePlan.read(folder, version.id).ids(0)
    assert len(set(ids.tolist())) == 200 and set(ids.tolist()) <= set(range(2000))  # mnist1d: train ids first
    assert not any((settings.data_path / ".distributed").iterdir())

    client = mlflow.MlflowClient(settings.tracking)
    [run] = client.search_runs(
        [client.get_experiment_by_name("mnist1d").experiment_id], f"tags.`curation.plan_id` = '{info['id']}'"
    )
    rounds = client.get_metric_history(run.info.run_id, "round_candidates")
    assert [m.step for m in rounds] == list(range(1, len(rounds) + 1)) and rounds[0].value == 2000
    assert run.data.metrics["decided_by_bounding"] == 0 and run.data.metrics["peak_rss_mb_max_worker"] > 0
    assert 0 < run.data.metrics["greedy_peak_rss_mb"] <= run.data.metrics["peak_rss_mb_max_worker"]
    assert run.data.metrics["graph_cpu_seconds"] > 0 and "greedy_cpu_seconds" in run.data.metrics


def test_a_distributed_plan_loads_back_for_training(project, client):
    from curation.selection.run import load_plan

    settings, version = project
    result = runner.invoke(
        app,
        [
            "select",
            str(version.id),
            "-m",
            "pairwise",
            "--engine",
            "dask",
            "--budget",
            "50",
            "--scheduler",
            client.scheduler.address,
            "-p",
            "source=features",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert len(load_plan(settings, info["id"]).ids(0)) == 50
    part = next((settings.home / info["path"]).glob("part-*.parquet"))
    pq.write_table(pq.read_table(part).slice(1), part)  # a part edited by hand
    with pytest.raises(CurationError, match="changed by hand"):
        load_plan(settings, info["id"])


def test_curate_flow_runs_on_the_dask_task_runner(prefect_server, project, client):
    from prefect.client.orchestration import get_client

    from flows.curate import curate

    settings, version = project
    plan = curate(
        version=str(version.id),
        method="pairwise",
        engine="dask",
        scheduler=client.scheduler.address,
        params={"budget": 100, "source": "features", "partition_rows": 1000},
    )
    assert (plan["method"], plan["budget"]) == ("pairwise-distributed", 100)
    with get_client(sync_client=True) as api:
        found = api.request(
            "POST",
            "/artifacts/filter",
            json={
                "artifacts": {"key": {"any_": ["distributed-selection", "distributed-rounds"]}},
                "limit": 5,
                "offset": 0,
                "sort": "CREATED_DESC",
            },
        ).json()
    by_key = {a["key"]: a for a in found}
    assert by_key["distributed-selection"]["type"] == "progress" and by_key["distributed-selection"]["data"] == 100
    assert json.loads(by_key["distributed-rounds"]["data"])[-1]["final"] is True


def test_a_worker_killed_midway_changes_nothing_and_its_tasks_rerun(client, tmp_path):
    source = write_embeddings(tmp_path / "e.parquet", clustered(30000, seed=2), row_group_size=2000)
    params = Params.of({"budget": 0.1, "partition_rows": 6000, "max_candidates": 10000, "exact_max": 0})
    reference = select(client, source, None, params, tmp_path / "work", tmp_path / "first")
    pids, killed = client.run(os.getpid), []

    def kill_a_searching_worker():
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            for worker, keys in client.processing().items():
                if any(str(key).startswith("knn-search") for key in keys):
                    os.kill(pids[worker], signal.SIGKILL)
                    killed.append(worker)
                    return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_searching_worker, daemon=True)
    killer.start()
    again = select(client, source, None, params, tmp_path / "work", tmp_path / "second")
    killer.join()
    client.wait_for_workers(2, timeout=300)  # the Nanny restarts the killed one; slow on a loaded machine
    assert killed
    assert again.parts == reference.parts and again.objective == reference.objective
    assert any(key.startswith("knn-search") for key in again.reruns), again.reruns


def test_bad_input_is_one_line_and_registers_nothing(project, client, monkeypatch):
    from curation.catalog import Catalog, ScoreSet
    from curation.distributed import cluster
    from curation.selection.run import plans

    settings, version = project
    ids = np.arange(2000, dtype=np.int64)  # the train rows of the version, in its order
    x = np.random.default_rng(0).normal(size=(2000, 8)).astype(np.float32)
    x[5, 2] = np.nan
    score_sets = {}
    for name, row_order in (("nan", ids), ("shuffled", np.random.default_rng(1).permutation(ids))):
        path = settings.data_path / f"scores-{name}.parquet"
        write_embeddings(path, x, ids=row_order, extra={"loss": pa.array(np.linspace(0, 1, 2000))})
        with Catalog(settings.catalog).session() as s:
            row = ScoreSet(
                version_id=version.id,
                scorer="test",
                params={},
                columns=["loss", "embedding"],
                path=str(path.relative_to(settings.home)),
                content_hash="-",
                ledger={},
            )
            s.add(row)
            s.flush()
            score_sets[name] = str(row.id)
    here = ["--scheduler", client.scheduler.address]
    for args, message in [
        (["--budget", "2001", "-p", "source=features", *here], "budget 2001 is larger than the 2000 samples"),
        (
            ["--budget", "0.1", "--score-set", score_sets["nan"], *here],
            "embeddings have NaN or inf in 1 rows (first: sample_id 5)",
        ),
        (
            [
                "--budget",
                "0.1",
                "--score-set",
                score_sets["shuffled"],
                "-p",
                "source=features",
                "-p",
                "utility=loss",
                *here,
            ],
            "embeddings and utilities are partitioned differently",
        ),
        (["--budget", "0.1", "-p", "source=features", "-p", "k_neighbors=0", *here], "k_neighbors must be"),
        (["-m", "uniform", "--budget", "0.1", "--engine", "dask"], "--engine dask runs the pairwise method"),
        (
            ["--budget", "0.1", "-p", "source=features", "--scheduler", "tcp://127.0.0.1:9"],
            "cannot reach the Dask scheduler at tcp://127.0.0.1:9",
        ),
    ]:
        if "tcp://127.0.0.1:9" in args:
            monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "1s")  # nothing listens there: no need to wait 10 s
        bad = runner.invoke(app, ["select", str(version.id), "-m", "pairwise", "--engine", "dask", *args])
        assert bad.exit_code == 2 and message in bad.stderr, (args, bad.output)
        assert len(bad.stderr.strip().splitlines()) == 1
    assert plans(settings) == []
    assert not any((settings.data_path / "plans").glob("*")) and not any(
        (settings.data_path / ".distributed").glob("*")
    )
