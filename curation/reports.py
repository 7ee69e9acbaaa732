"""A comparison as pictures and as a table: accuracy vs compute, coverage and occupancy against theory,
speedup bars; and the one table the CLI, the DVC report and the compare flow print.

``render`` takes the rows of ``curation.compare`` (``Row.to_dict()``, also as read back from JSON) and
writes PNGs with matplotlib's Agg canvas (no display, no pyplot state). Every method keeps one colour
across the charts; the theory (docs/papers.md section 1) is drawn dashed beside what was measured.
``table`` formats the same rows as text cells, ``markdown`` writes them as a markdown table.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from curation.errors import CurationError
from curation.files import write_atomic
from curation.metrics.coverage import poisson_pmf, rs2_coverage, soft_coverage
from curation.selection.sampling import per_epoch

CHARTS = ("accuracy_vs_compute", "coverage", "occupancy", "speedup")
_FIX = "pass the rows `curation compare --json` prints (compare.Row.to_dict())"


def render(rows: Sequence[Mapping], out_dir: Path) -> dict[str, Path]:
    """Draw the comparison ``rows`` and write one PNG per chart into ``out_dir``; returns {chart: path}.

    Charts: ``accuracy_vs_compute`` (every run's curve, log compute, the 99% target), ``coverage``
    (distinct samples seen per epoch, measured and in theory), ``occupancy`` (how often each sample was
    drawn, measured bars against the theoretical law, one panel per run) and ``speedup`` (compute and
    time to the target against the full-data baseline). Rows are checked and every figure drawn before
    anything is written; each file appears whole (written aside, then renamed).
    """
    images = {name: _png(fig) for name, fig in figures(rows).items()}
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CurationError(
            f"cannot create the report folder {out_dir}: {exc.strerror}", "give a writable folder"
        ) from None
    paths = {}
    for name, data in images.items():
        path = out_dir / f"{name}.png"
        paths[name] = write_atomic(path, lambda tmp, data=data: tmp.write_bytes(data))
    return paths


def figures(rows: Sequence[Mapping]) -> dict:
    """The matplotlib Figures ``render`` saves, by chart name (for inspection or logging as artifacts)."""
    rows = _checked(rows)
    colours = {i: f"C{i % 10}" for i in range(len(rows))}
    return {
        "accuracy_vs_compute": _accuracy(rows, colours),
        "coverage": _coverage(rows, colours),
        "occupancy": _occupancy(rows, colours),
        "speedup": _speedup(rows, colours),
    }


def label(row: Mapping) -> str:
    """'soft ratio=0.3', 'full data', 'soft ratio=0.3 @0.3' (at a compute budget): how a run is named on every
    chart."""
    at = f" @{row['budget']:g}" if row.get("budget") else ""
    if row["method"] == "full":
        return "full data" + at
    params = ",".join(f"{k}={v}" for k, v in (row.get("params") or {}).items() if k != "seed")
    return f"{row['method']} {params}".strip() + at


def table(rows: Sequence[Mapping]) -> list[dict[str, str]]:
    """The comparison as text cells, one dict per run (column -> cell, columns in order): what every
    table of a comparison shows (a rich table, markdown, a Prefect table artifact)."""
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    return [
        {
            "method": label(r),
            "run": str(r["run_id"]),
            "epochs": str(r["epochs"]),
            "best acc": f"{r['best_accuracy']:.4f}",
            "GFLOP": f"{r['total_flops'] / 1e9:.1f}",
            "seconds": f"{r['total_seconds']:.1f}",
            "backward": f"{r['backward_samples']:,}",
            "coverage": fmt(r["history"][-1]["coverage"] if r.get("history") else None, ".3f"),
            "x compute": fmt(r.get("speedup_compute"), ".2f"),
            "x time": fmt(r.get("speedup_time"), ".2f"),
        }
        for r in rows
    ]


def markdown(cells: Sequence[Mapping[str, str]]) -> str:
    """``table``'s cells as a markdown table (the first column left-aligned, the numbers right-aligned)."""
    columns = list(cells[0]) if cells else []
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(["---"] + ["---:"] * (len(columns) - 1)) + "|"]
    lines += ["| " + " | ".join(row[c] for c in columns) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def coverage_theory(kind: str, ratio: float, epochs: int, n: int) -> list[float] | None:
    """Expected coverage after epochs 1..``epochs`` of a plan kind; None when no theory applies."""
    k = range(1, epochs + 1)
    if kind == "full":
        return [1.0 for _ in k]
    if kind == "soft":
        return [soft_coverage(ratio, e, n) for e in k]
    if kind == "rs2":
        return [rs2_coverage(per_epoch(n, ratio) / n, e) for e in k]
    if kind == "static":
        return [ratio for _ in k]
    return None


def occupancy_theory(kind: str, ratio: float, epochs: int, n: int) -> np.ndarray | None:
    """Expected share of samples drawn 0..``epochs``+ times over the run; None when no theory applies."""
    kmax = epochs if kind != "soft" else max(epochs, int(per_epoch(n, ratio) * epochs / n * 3 + 10))
    law = np.zeros(kmax + 1)
    if kind == "full":
        law[epochs] = 1.0
    elif kind == "soft":  # Binomial(m k, 1/N) ~ Poisson(m k / N)
        law = poisson_pmf(per_epoch(n, ratio) * epochs / n, kmax)
    elif kind == "rs2":  # in each epoch a sample is one of the m distinct draws with probability m/N
        p = per_epoch(n, ratio) / n
        law[:] = [math.comb(epochs, j) * p**j * (1 - p) ** (epochs - j) for j in range(epochs + 1)]
    elif kind == "static":
        law[0], law[epochs] = 1 - ratio, ratio
    else:
        return None
    return law


# -- the charts ------------------------------------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _accuracy(rows, colours):
    fig = _figure(7.5, 4.6)
    ax = fig.add_subplot()
    for i, row in enumerate(rows):
        flops = [p["flops"] for p in row["history"]]
        accuracy = [p["accuracy"] for p in row["history"]]
        ax.step(
            flops,
            accuracy,
            where="post",
            marker="o",
            markersize=3,
            color=colours[i],
            label=label(row),
            linewidth=2.2 if row["method"] == "full" else 1.5,
        )
    target = next((r["target_accuracy"] for r in rows if r.get("target_accuracy") is not None), None)
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:.3f} (99% of full)")
    ax.set_xscale("log")
    ax.set_xlabel("cumulative compute (FLOPs, training + selection)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy against compute")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig


def _coverage(rows, colours):
    fig = _figure(7.5, 4.6)
    ax = fig.add_subplot()
    for i, row in enumerate(rows):
        epochs = [p["epoch"] for p in row["history"]]
        ax.plot(
            epochs,
            [p["coverage"] for p in row["history"]],
            marker="o",
            markersize=3,
            color=colours[i],
            label=f"{label(row)} (measured)",
        )
        theory = coverage_theory(row["plan_kind"], row["ratio"], len(epochs), row["train_samples"])
        if theory is not None:
            ax.plot(epochs, theory, linestyle="--", color=colours[i], alpha=0.7, label=f"{label(row)} (theory)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("coverage: distinct train samples seen / N")
    ax.set_ylim(0, 1.05)
    ax.set_title("Coverage per epoch, measured (solid) and in theory (dashed)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="x-small", ncol=2)
    fig.tight_layout()
    return fig


def _occupancy(rows, colours):
    from matplotlib.ticker import MaxNLocator

    cols = min(len(rows), 2)
    nrows = math.ceil(len(rows) / cols)
    fig = _figure(4.2 * cols, 3.2 * nrows)
    for i, row in enumerate(rows):
        ax = fig.add_subplot(nrows, cols, i + 1)
        measured = np.asarray(row["occupancy"], dtype=float)
        share = measured / max(measured.sum(), 1)
        ax.bar(np.arange(len(share)), share, color=colours[i], alpha=0.75, label="measured")
        law = occupancy_theory(row["plan_kind"], row["ratio"], row["epochs"], row["train_samples"])
        if law is not None:
            law = law[: max(len(share), int(np.flatnonzero(law > 1e-4).max(initial=0)) + 1)]
            discrete = row["plan_kind"] in ("full", "static")  # two atoms: markers only
            ax.plot(
                np.arange(len(law)),
                law,
                color="black",
                linestyle="none" if discrete else "--",
                marker="x",
                markersize=5,
                linewidth=1,
                label="theory",
            )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{label(row)}, {row['epochs']} epochs", fontsize="small")
        ax.set_xlabel("times drawn")
        ax.set_ylabel("share of samples")
        ax.legend(fontsize="x-small")
    fig.suptitle("Occupancy: how often each sample was trained on")
    fig.tight_layout()
    return fig


def _speedup(rows, colours):
    methods = [(i, r) for i, r in enumerate(rows) if r["method"] != "full"]
    fig = _figure(7.5, 1.6 + 0.8 * max(len(methods), 1))
    ax = fig.add_subplot()
    height = 0.38
    for j, (i, row) in enumerate(methods):
        for offset, key, hatch in ((-height / 2, "speedup_compute", None), (height / 2, "speedup_time", "//")):
            value = row.get(key)
            if value is None:
                ax.text(
                    0.01,
                    j + offset,
                    f"target not reached ({key.split('_')[1]})",
                    va="center",
                    fontsize="x-small",
                    transform=ax.get_yaxis_transform(),
                )
                continue
            ax.barh(j + offset, value, height=height, color=colours[i], hatch=hatch, edgecolor="white")
            ax.text(value, j + offset, f" {value:.2f}x", va="center", fontsize="x-small")
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(methods)), [label(r) for _, r in methods])
    ax.set_ylim(len(methods) - 0.5, -0.5)  # first method on top
    ax.set_xlim(0, 1.15 * max([1.0] + [r.get(k) or 0 for _, r in methods for k in ("speedup_compute", "speedup_time")]))
    ax.set_xlabel("speedup to 99% of full data's best (solid: compute, hatched: time)")
    ax.set_title("Speedup against the full-data baseline")
    fig.tight_layout()
    return fig


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _checked(rows: Sequence[Mapping]) -> list[Mapping]:
    """The rows, or a one-line error naming the first thing a chart would miss."""
    if not rows:
        raise CurationError("no comparison rows to draw", _FIX)
    need = ("method", "epochs", "history", "occupancy", "ratio", "train_samples", "plan_kind")
    for row in rows:
        if not isinstance(row, Mapping):
            raise CurationError(f"a comparison row is a {type(row).__name__}, not a mapping", _FIX)
        missing = [k for k in need if k not in row]
        if missing:
            raise CurationError(f"comparison row {row.get('method', '?')!r} lacks {', '.join(missing)}", _FIX)
        if not row["history"] or any(
            k not in p for p in row["history"] for k in ("epoch", "flops", "accuracy", "coverage")
        ):
            raise CurationError(
                f"comparison row {row['method']!r} has no evaluation curve "
                "(epoch, flops, accuracy, coverage per point)",
                _FIX,
            )
    return list(rows)
