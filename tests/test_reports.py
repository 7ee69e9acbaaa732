"""curation.reports: the comparison charts hold the measured curves, the theory and the speedups."""

import numpy as np
import pytest
from matplotlib.container import BarContainer
from matplotlib.image import imread

from curation import reports
from curation.compare import plan_kind
from curation.errors import CurationError
from curation.metrics.coverage import soft_coverage
from curation.selection.plans import FullPlan, StaticPlan
from curation.selection.sampling import SampledPlan

N = 1000


def _row(method, params, epochs, ratio, kind, accuracy, speedups=(None, None), target=0.9):
    flops = np.cumsum(np.full(epochs, 1e9 * ratio)).tolist()
    coverage = [1.0] * epochs if kind == "full" else [min(1.0, ratio * (e + 1) * 0.8) for e in range(epochs)]
    history = [
        {"epoch": e + 1, "flops": flops[e], "seconds": 0.5 * (e + 1), "accuracy": accuracy[e], "coverage": coverage[e]}
        for e in range(epochs)
    ]
    occ = [0] * (epochs + 1)
    occ[epochs] = N if kind == "full" else 0
    if kind == "static":
        occ[0], occ[epochs] = int(N * (1 - ratio)), int(N * ratio)
    elif kind == "soft":
        occ[:4] = [200, 300, 300, 200]
    row = {
        "method": method,
        "params": params,
        "run_id": 1,
        "epochs": epochs,
        "ratio": ratio,
        "train_samples": N,
        "plan_kind": kind,
        "history": history,
        "occupancy": occ,
        "best_accuracy": max(accuracy),
        "speedup_compute": speedups[0],
        "speedup_time": speedups[1],
    }
    if method != "full":
        row["target_accuracy"] = target
    return row


@pytest.fixture
def rows():
    return [
        _row("full", {}, 3, 1.0, "full", [0.6, 0.8, 0.91]),
        _row("soft", {"ratio": 0.5, "seed": 0}, 6, 0.5, "soft", [0.5, 0.7, 0.8, 0.85, 0.9, 0.92], (1.6, 1.3)),
        _row("uniform", {"budget": 0.5}, 6, 0.5, "static", [0.4, 0.6, 0.7, 0.75, 0.8, 0.82]),
    ]


def test_accuracy_chart_has_every_run_and_the_target(rows):
    ax = reports.figures(rows)["accuracy_vs_compute"].axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"full data", "soft ratio=0.5", "uniform budget=0.5", "target 0.900 (99% of full)"}
    soft = lines["soft ratio=0.5"]
    assert list(soft.get_xdata()) == [p["flops"] for p in rows[1]["history"]]
    assert list(soft.get_ydata()) == [p["accuracy"] for p in rows[1]["history"]]
    assert ax.get_xscale() == "log"
    assert list(lines["target 0.900 (99% of full)"].get_ydata()) == [0.9, 0.9]


def test_coverage_chart_draws_measured_and_theory(rows):
    ax = reports.figures(rows)["coverage"].axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert len(lines) == 6  # measured and theory for each of the three runs
    measured = lines["soft ratio=0.5 (measured)"]
    assert list(measured.get_ydata()) == [p["coverage"] for p in rows[1]["history"]]
    theory = lines["soft ratio=0.5 (theory)"].get_ydata()
    assert np.allclose(theory, [soft_coverage(0.5, k, N) for k in range(1, 7)])
    assert list(lines["uniform budget=0.5 (theory)"].get_ydata()) == [0.5] * 6
    assert list(lines["full data (theory)"].get_ydata()) == [1.0] * 3


def test_occupancy_panels_compare_bars_with_the_law(rows):
    axes = reports.figures(rows)["occupancy"].axes
    assert len(axes) == 3
    for ax, row in zip(axes, rows):
        bars = [c for c in ax.containers if isinstance(c, BarContainer)][0]
        heights = [b.get_height() for b in bars]
        assert np.allclose(heights, np.array(row["occupancy"]) / N)
        theory = [line for line in ax.get_lines() if line.get_label() == "theory"][0].get_ydata()
        assert abs(sum(theory) - 1) < 1e-3
    soft_theory = [line for line in axes[1].get_lines() if line.get_label() == "theory"][0].get_ydata()
    assert soft_theory[3] == pytest.approx(np.exp(-3) * 27 / 6)  # Poisson(0.5 * 6 = 3) at 3
    static_theory = [line for line in axes[2].get_lines() if line.get_label() == "theory"][0].get_ydata()
    assert static_theory[0] == pytest.approx(0.5) and static_theory[6] == pytest.approx(0.5)


def test_speedup_bars_and_missed_targets(rows):
    ax = reports.figures(rows)["speedup"].axes[0]
    widths = sorted(round(p.get_width(), 3) for c in ax.containers for p in c)
    assert widths == [1.3, 1.6]  # the soft run's compute and time bars; the full run is the reference line
    texts = [t.get_text() for t in ax.texts]
    assert "target not reached (compute)" in texts and "target not reached (time)" in texts
    assert [t.get_text() for t in ax.get_yticklabels()] == ["soft ratio=0.5", "uniform budget=0.5"]


def test_render_writes_real_pngs(rows, tmp_path):
    paths = reports.render(rows, tmp_path / "report")
    assert set(paths) == set(reports.CHARTS)
    for path in paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = imread(path)
        assert image.shape[0] > 200 and image.shape[1] > 400 and image[..., :3].std() > 0.05  # not blank
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == sorted(f"{c}.png" for c in reports.CHARTS)


@pytest.mark.parametrize(
    "bad, message",
    [
        ([], "no comparison rows"),
        ([{"method": "soft"}], "lacks epochs"),
        ("history", "has no evaluation curve"),
    ],
)
def test_bad_rows_are_one_line_errors_and_write_nothing(rows, tmp_path, bad, message):
    if bad == "history":
        bad = [dict(rows[0], history=[])]
    with pytest.raises(CurationError, match=message):
        reports.render(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_plan_kind_names_the_theory_that_applies():
    ids = np.arange(10_000, 10_000 + N)
    assert plan_kind(SampledPlan(1, ids, "soft", 0.3, seed=4), 5) == "soft"
    assert plan_kind(StaticPlan(1, ids[:250]), 3) == "static"
    assert plan_kind(FullPlan(1, ids), 2) == "full"


def test_one_table_of_a_comparison_as_cells_and_markdown(rows):
    for row in rows:
        row.update(total_flops=row["history"][-1]["flops"], total_seconds=3.0, backward_samples=3000)
    cells = reports.table(rows)
    assert list(cells[0]) == [
        "method",
        "run",
        "epochs",
        "best acc",
        "GFLOP",
        "seconds",
        "backward",
        "coverage",
        "x compute",
        "x time",
    ]
    assert [c["method"] for c in cells] == ["full data", "soft ratio=0.5", "uniform budget=0.5"]
    assert cells[1] == {
        "method": "soft ratio=0.5",
        "run": "1",
        "epochs": "6",
        "best acc": "0.9200",
        "GFLOP": "3.0",
        "seconds": "3.0",
        "backward": "3,000",
        "coverage": "1.000",
        "x compute": "1.60",
        "x time": "1.30",
    }
    assert cells[2]["x compute"] == "-" and cells[0]["coverage"] == "1.000"
    lines = reports.markdown(cells).splitlines()
    assert lines[0] == "| " + " | ".join(cells[0]) + " |" and lines[1] == "|---|" + "---:|" * 9
    assert lines[3] == "| soft ratio=0.5 | 1 | 6 | 0.9200 | 3.0 | 3.0 | 3,000 | 1.000 | 1.60 | 1.30 |"
    assert len(lines) == 2 + len(rows)
