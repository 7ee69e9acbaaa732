"""The compute ledger and accuracy per compute, against hand-computed values."""

import math

import numpy as np
import pytest
from torch import nn

from curation.errors import CurationError
from curation.metrics import efficiency
from curation.metrics.efficiency import Curve
from curation.metrics.ledger import ComputeLedger, forward_flops_per_sample
from models import ModelSpec, build


def test_forward_flops_are_measured_per_sample():
    # ConvNet on [1, 40]: conv lengths 19, 10, 5; multiply-adds per sample, 2 FLOPs each.
    macs = 25 * 19 * 5 * 1 + 25 * 10 * 3 * 25 + 25 * 5 * 3 * 25 + 125 * 10
    assert forward_flops_per_sample(build("cnn1d", ModelSpec(40, (1, 40), 10)), (1, 40)) == 2 * macs
    mlp = build("mlp", ModelSpec(5, (5,), 3))
    assert forward_flops_per_sample(mlp, (5,)) == 2 * (5 * 256 + 256 * 256 + 256 * 3)
    assert mlp.training  # measured in eval mode, mode restored
    with_bn = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)).eval()
    assert forward_flops_per_sample(with_bn, (4,)) == 2 * (4 * 8 + 8 * 2) and not with_bn.training


def test_booking_counts_backward_as_twice_the_forward_and_keeps_selection_apart():
    ledger = ComputeLedger(flops_per_sample=100.0)
    ledger.book_forward(10)
    ledger.book_backward(4)
    ledger.book_selection(forwards=6, seconds=0.5)
    ledger.book_selection(seconds=0.25, flops=1e3)
    ledger.book_eval(50, 0.1)
    ledger.train_seconds += 2.0
    assert ledger.train_flops == 10 * 100 + 4 * 200
    assert ledger.selection_flops == 6 * 100 + 1e3
    assert ledger.total_flops == ledger.train_flops + ledger.selection_flops  # evaluation is not counted
    assert ledger.total_seconds == 2.75
    assert (ledger.selection_forward_samples, ledger.eval_forward_samples) == (6, 50)


def test_absorbing_another_run_books_all_of_it_as_selection():
    scoring = ComputeLedger(flops_per_sample=10.0, train_seconds=3.0)
    scoring.book_forward(100)
    scoring.book_backward(100)
    scoring.book_selection(forwards=20, seconds=1.0)
    run = ComputeLedger(flops_per_sample=50.0)
    run.absorb_selection(scoring)
    assert run.selection_flops == scoring.total_flops == 100 * 10 + 100 * 20 + 20 * 10
    assert run.selection_seconds == 4.0 and run.selection_forward_samples == 120
    assert run.train_flops == 0 and run.forward_samples == 0


def test_ledger_round_trips_through_a_dict():
    ledger = ComputeLedger(flops_per_sample=3.0)
    ledger.book_forward(7)
    data = ledger.to_dict()
    assert data["total_flops"] == 21.0
    assert ComputeLedger.from_dict(data) == ledger
    with pytest.raises(CurationError, match="unknown entries"):
        ComputeLedger.from_dict({**data, "gpu_hours": 1})


CURVE = Curve(
    flops=np.array([10.0, 100.0, 1000.0]), seconds=np.array([1.0, 2.0, 3.0]), accuracy=np.array([0.5, 0.8, 0.9])
)


def test_curve_from_history_and_costs_to_a_target():
    history = [
        {"flops": f, "seconds": s, "accuracy": a, "epoch": i + 1}
        for i, (f, s, a) in enumerate(zip(CURVE.flops, CURVE.seconds, CURVE.accuracy))
    ]
    curve = Curve.from_history(history)
    assert curve.best == 0.9
    assert efficiency.compute_to_accuracy(curve, 0.8) == 100.0
    assert efficiency.time_to_accuracy(curve, 0.85) == 3.0
    assert efficiency.compute_to_accuracy(curve, 0.95) is None
    assert efficiency.target_accuracy(curve) == pytest.approx(0.891)
    with pytest.raises(CurationError, match="no evaluated epochs"):
        Curve.from_history([])


def test_speedup_against_a_baseline():
    baseline = Curve(np.array([100.0, 200.0, 400.0]), np.array([10.0, 20.0, 40.0]), np.array([0.6, 0.85, 0.9]))
    method = Curve(np.array([50.0, 100.0]), np.array([4.0, 8.0]), np.array([0.8, 0.895]))
    target = efficiency.target_accuracy(baseline)  # 0.891: baseline reaches it at 400 FLOPs / 40 s
    assert efficiency.speedup(baseline, method, target) == 4.0  # method reaches it at 100 FLOPs
    assert efficiency.speedup(baseline, method, target, by="seconds") == 5.0
    assert efficiency.speedup(baseline, CURVE, target) == 0.4  # reached at 1000 FLOPs: a slowdown
    assert efficiency.speedup(baseline, Curve(np.array([1.0]), np.array([1.0]), np.array([0.5])), target) is None


def test_accuracy_per_pflop_and_area_under_log_compute():
    assert efficiency.accuracy_per_pflop(CURVE) == pytest.approx(0.9 / 1e-12)
    # Step function over log10 compute in [1, 3]: 0.5 on [1, 2), 0.8 on [2, 3).
    assert efficiency.auc_log_compute(CURVE) == pytest.approx((0.5 + 0.8) / 2)
    # Before the first point the accuracy is 0; past the last it stays at 0.9.
    assert efficiency.auc_log_compute(CURVE, lo=1.0, hi=1000.0) == pytest.approx((0 + 0.5 + 0.8) / 3)
    assert efficiency.auc_log_compute(CURVE, lo=10.0, hi=1e4) == pytest.approx((0.5 + 0.8 + 0.9) / 3)
    assert efficiency.auc_log_compute(CURVE, lo=100.0, hi=100.0) == 0.8
    with pytest.raises(CurationError, match="bad compute range"):
        efficiency.auc_log_compute(CURVE, lo=0.0)


def test_summary_with_and_without_baseline_and_the_plot():
    alone = efficiency.summarize(CURVE)
    assert alone["best_accuracy"] == 0.9 and alone["total_flops"] == 1000.0 and "speedup_compute" not in alone
    baseline = Curve(np.array([20.0, 2000.0]), np.array([2.0, 6.0]), np.array([0.7, 0.9]))
    both = efficiency.summarize(CURVE, baseline)
    assert both["target_accuracy"] == pytest.approx(0.891)
    assert both["compute_to_target"] == 1000.0 and both["speedup_compute"] == 2.0 and both["speedup_time"] == 2.0
    # Shared range [10, 2000]: the baseline is 0 below 20 FLOPs, this run holds 0.9 past 1000.
    width = math.log10(2000) - 1
    expected = (0.5 * 1 + 0.8 * 1 + 0.9 * (math.log10(2000) - 3)) / width
    assert both["auc_log_compute_shared"] == pytest.approx(expected)
    figure = efficiency.plot({"run": CURVE, "baseline": baseline}, both["target_accuracy"])
    from io import BytesIO

    buffer = BytesIO()
    figure.savefig(buffer, format="png")
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [line.get_label() for line in figure.axes[0].get_lines()][:2] == ["run", "baseline"]
