"""Decision curve (net benefit) against hand computation; ROC / PR curves and their bootstrap
bands against scikit-learn and against what a band must do."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from calcinet.evaluation.metrics import (
    bootstrap_weights,
    curve_bands,
    decision_summary,
    net_benefit,
    precision_at,
    roc_at,
    treat_all_net_benefit,
)


def _scores(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = (np.arange(n) % 3 == 0).astype(int)  # prevalence 1/3
    logit = 2.0 * (label - 0.5) + rng.normal(0, 1.5, n)  # AUROC about 0.83
    return label, 1 / (1 + np.exp(-logit))


def test_net_benefit_matches_a_hand_computation() -> None:
    # 10 findings, 4 malignant. At pt = 0.25 the treated are p >= 0.25: 6 findings, of which
    # 3 malignant (0.9, 0.8, 0.3) and 3 benign (0.7, 0.4, 0.25).
    label = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    probability = np.array([0.9, 0.8, 0.3, 0.1, 0.7, 0.4, 0.25, 0.2, 0.05, 0.0])
    # NB = TP/n - FP/n * pt/(1-pt) = 3/10 - 3/10 * (1/3) = 0.2
    # At pt = 0.5: treated 0.9, 0.8, 0.7 -> TP 2, FP 1: 2/10 - 1/10 * 1 = 0.1
    # At pt = 0.8: treated 0.9, 0.8 -> TP 2, FP 0: 0.2
    assert net_benefit(label, probability, [0.25, 0.5, 0.8]) == pytest.approx([0.2, 0.1, 0.2])
    # Treat all: prevalence 0.4 - 0.6 * pt/(1-pt): 0.4 - 0.2 = 0.2; 0.4 - 0.6 = -0.2; 0.4 - 2.4
    assert treat_all_net_benefit(label, [0.25, 0.5, 0.8]) == pytest.approx([0.2, -0.2, -2.0])
    # Bootstrap counts weigh every finding: doubling one malignant treated finding (0.9) at
    # pt = 0.5 gives TP 3, FP 1 of n = 11: 3/11 - 1/11.
    weights = np.ones((1, 10))
    weights[0, 0] = 2
    assert net_benefit(label, probability, [0.5], weights)[0, 0] == pytest.approx(2 / 11)
    with pytest.raises(ValueError, match="expected 0 < pt < 1"):
        net_benefit(label, probability, [0.0])


def test_treat_all_is_the_model_that_calls_everything_malignant() -> None:
    label, _ = _scores(90)
    grid = np.array([0.1, 0.3, 0.6])
    assert net_benefit(label, np.ones(90), grid) == pytest.approx(
        treat_all_net_benefit(label, grid)
    )
    assert net_benefit(label, np.zeros(90), grid) == pytest.approx(0.0)  # treat none


def test_point_curves_are_scikit_learns() -> None:
    label, probability = _scores(120)
    grid = np.linspace(0, 1, 401)
    fpr, tpr, _ = roc_curve(label, probability, drop_intermediate=False)
    # Brute force: the highest point of the polyline through scikit-learn's points above each
    # false-positive rate (a vertical step counts with its top).
    expected = []
    for f in grid:
        heights = [
            max(t0, t1) if f1 == f0 else t0 + (f - f0) / (f1 - f0) * (t1 - t0)
            for f0, f1, t0, t1 in zip(fpr[:-1], fpr[1:], tpr[:-1], tpr[1:], strict=True)
            if f0 <= f <= f1
        ]
        expected.append(max(heights))
    assert roc_at(label, probability, grid=grid) == pytest.approx(expected)
    # The linear ROC's area is the AUROC, the step PR curve's area the average precision.
    fine = np.linspace(0, 1, 20001)
    assert np.trapezoid(roc_at(label, probability, grid=fine), fine) == pytest.approx(
        roc_auc_score(label, probability), abs=1e-4
    )
    recalls = (np.arange(20000) + 0.5) / 20000
    assert precision_at(label, probability, grid=recalls).mean() == pytest.approx(
        average_precision_score(label, probability), abs=1e-3
    )


def test_bands_contain_the_point_curves_and_narrow_with_n() -> None:
    widths = []
    for n in (60, 600):
        label, probability = _scores(n, seed=n)
        bands = curve_bands(label, probability, n_resamples=400, seed=3)
        for name in ("roc", "pr", "net_benefit"):
            curve = bands.__dict__[name]
            assert np.all(curve["low"] <= curve["value"] + 1e-9), (n, name)
            assert np.all(curve["value"] <= curve["high"] + 1e-9), (n, name)
        widths.append(
            {
                "roc": np.mean(bands.roc["high"] - bands.roc["low"]),
                "pr": np.mean(bands.pr["high"] - bands.pr["low"]),
                "net_benefit": np.mean(bands.net_benefit["high"] - bands.net_benefit["low"]),
            }
        )
    small, large = widths
    for name in small:
        # sqrt(10) times the data: the band about 3 times narrower (at least 2).
        assert large[name] < small[name] / 2, (name, small[name], large[name])


def test_bands_use_the_resamples_of_the_metric_intervals() -> None:
    label, probability = _scores(80)
    groups = np.repeat(np.arange(40), 2)  # two findings per patient
    bands = curve_bands(label, probability, n_resamples=50, seed=11, groups=groups)
    assert bands.unit == "patient" and bands.n_resamples == 50
    weights = np.concatenate(list(bootstrap_weights(80, 50, 11, groups)))
    curves = net_benefit(label, probability, bands.net_benefit["grid"], weights)
    low, high = np.percentile(curves, [2.5, 97.5], axis=0)
    assert bands.net_benefit["low"] == pytest.approx(low)
    assert bands.net_benefit["high"] == pytest.approx(high)


def test_decision_summary_rows_include_the_operating_threshold() -> None:
    label, probability = _scores(90)
    bands = curve_bands(label, probability, n_resamples=100, seed=0, extra_thresholds=[0.437])
    summary = decision_summary(label, bands, 0.437)
    rows = {row["threshold"]: row for row in summary["rows"]}
    assert sorted(rows) == [0.05, 0.1, 0.2, 0.3, 0.437, 0.5]
    assert rows[0.437]["operating"] and not rows[0.5]["operating"]
    assert rows[0.437]["net_benefit"] == pytest.approx(net_benefit(label, probability, [0.437])[0])
    assert rows[0.2]["treat_all"] == pytest.approx(treat_all_net_benefit(label, [0.2])[0])
    low, high = rows[0.3]["ci95"]
    assert low <= rows[0.3]["net_benefit"] <= high
