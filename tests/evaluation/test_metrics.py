"""Metrics, ECE and the (cluster) bootstrap against scikit-learn, torchmetrics and hand counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from torchmetrics.classification import BinaryAUROC, BinaryCalibrationError

from calcinet.evaluation import EvaluationError
from calcinet.evaluation.metrics import (
    METRIC_NAMES,
    bootstrap_weights,
    calibration_bins,
    check_binary,
    confusion_counts,
    evaluate_with_bootstrap,
    expected_calibration_error,
    point_metrics,
    weighted_metrics,
)


def _fixed(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities with ties (rounded to 2 decimals), about 40 % malignant."""
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < 0.4).astype(int)
    probability = np.round(np.clip(rng.normal(0.35 + 0.3 * label, 0.2), 0, 1), 2)
    return label, probability


def _sklearn(label: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, float]:
    predicted = (probability >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(label, predicted, labels=[0, 1]).ravel()
    return {
        "auroc": roc_auc_score(label, probability),
        "ap": average_precision_score(label, probability),
        "accuracy": accuracy_score(label, predicted),
        "sensitivity": recall_score(label, predicted),
        "specificity": tn / (tn + fp),
        "ppv": precision_score(label, predicted),
        "npv": tn / (tn + fn),
        "f1": f1_score(label, predicted),
        "brier": brier_score_loss(label, probability),
    }


@pytest.mark.parametrize("threshold", [0.5, 0.37, 0.61])
def test_point_metrics_match_scikit_learn(threshold: float) -> None:
    label, probability = _fixed()
    ours = point_metrics(label, probability, threshold)
    assert set(ours) == set(METRIC_NAMES)
    for name, expected in _sklearn(label, probability, threshold).items():
        assert ours[name] == pytest.approx(expected, abs=1e-12), name
    assert ours["auroc"] == pytest.approx(
        float(BinaryAUROC()(torch.tensor(probability), torch.tensor(label))), abs=1e-6
    )


def test_decision_is_probability_at_or_above_the_threshold() -> None:
    # The ROC convention under which the stored threshold was chosen: p == t is malignant.
    counts = confusion_counts(np.array([1, 0, 1, 0]), np.array([0.4, 0.4, 0.39, 0.1]), 0.4)
    assert counts == {"tp": 1, "fp": 1, "tn": 1, "fn": 1}


def test_ece_by_hand() -> None:
    # Ten bins of width 0.1. Bin [0.1, 0.2): p 0.1, 0.15 (mean 0.125), labels 0, 0 (0.0);
    # bin [0.8, 0.9): p 0.8, 0.85, 0.85 (mean 0.8333), labels 1, 1, 0 (0.6667); bin [0.9, 1]:
    # p 0.95 (mean 0.95), label 1. ECE = 2/6*0.125 + 3/6*0.16667 + 1/6*0.05 = 0.13333.
    label = np.array([0, 0, 1, 1, 0, 1])
    probability = np.array([0.1, 0.15, 0.8, 0.85, 0.85, 0.95])
    expected = 2 / 6 * 0.125 + 3 / 6 * abs(2.5 / 3 - 2 / 3) + 1 / 6 * 0.05
    assert expected == pytest.approx(0.1333333, abs=1e-6)
    assert expected_calibration_error(label, probability) == pytest.approx(expected, abs=1e-12)
    bins = calibration_bins(label, probability)
    assert [b["count"] for b in bins] == [0, 2, 0, 0, 0, 0, 0, 0, 3, 1]
    assert bins[8]["fraction_malignant"] == pytest.approx(2 / 3)


def test_ece_matches_torchmetrics() -> None:
    label, _ = _fixed(300, seed=3)
    rng = np.random.default_rng(4)
    # Random probabilities that avoid the bin edges (where float32 and float64 may disagree).
    probability = np.clip(rng.beta(2, 2, 300), 1e-3, 1 - 1e-3)
    probability = np.where(
        np.abs(probability * 15 - np.round(probability * 15)) < 1e-4,
        probability + 2e-4,
        probability,
    )
    for n_bins in (10, 15):
        reference = BinaryCalibrationError(n_bins=n_bins, norm="l1")(
            torch.tensor(probability, dtype=torch.float64), torch.tensor(label)
        )
        assert expected_calibration_error(label, probability, n_bins) == pytest.approx(
            float(reference), abs=1e-9
        )


def test_vectorised_metrics_equal_scikit_learn_on_each_resample() -> None:
    label, probability = _fixed(80, seed=1)
    weights = next(bootstrap_weights(len(label), 6, seed=5))
    free, per = weighted_metrics(label, probability, weights, [0.45])
    for b, row in enumerate(weights):
        index = np.repeat(np.arange(len(label)), row.astype(int))  # the resampled data itself
        expected = _sklearn(label[index], probability[index], 0.45)
        expected["ece"] = expected_calibration_error(label[index], probability[index])
        for name, value in expected.items():
            ours = free[name][b] if name in free else per[0][name][b]
            assert ours == pytest.approx(value, abs=1e-12), (b, name)
    # Unit weights are the plain data set.
    free, per = weighted_metrics(label, probability, np.ones((1, len(label))), [0.45])
    assert free["auroc"][0] == pytest.approx(roc_auc_score(label, probability), abs=1e-12)


def test_bootstrap_is_seeded_and_covers_the_estimate() -> None:
    label, probability = _fixed(150)
    a = evaluate_with_bootstrap(label, probability, [0.5], n_resamples=300, seed=7)
    b = evaluate_with_bootstrap(label, probability, [0.5], n_resamples=300, seed=7)
    c = evaluate_with_bootstrap(label, probability, [0.5], n_resamples=300, seed=8)
    assert a.metrics() == b.metrics()
    assert a.metrics()["auroc"]["ci95"] != c.metrics()["auroc"]["ci95"]
    for name, entry in a.metrics().items():
        low, high = entry["ci95"]
        assert low <= entry["value"] <= high, name
        assert entry["value"] == pytest.approx(point_metrics(label, probability, 0.5)[name])
    assert a.unit == "sample" and a.n_units == 150


def test_patient_bootstrap_resamples_whole_patients() -> None:
    patients = np.repeat([f"p{i}" for i in range(10)], [1, 2, 3, 4, 5, 1, 2, 3, 4, 5])
    weights = np.concatenate(
        list(bootstrap_weights(len(patients), 500, seed=0, groups=patients, block=128))
    )
    assert weights.shape == (500, len(patients))
    for patient in np.unique(patients):
        columns = weights[:, patients == patient]
        assert (columns == columns[:, :1]).all(), "every sample of a patient is drawn together"
    per_patient = np.stack([weights[:, patients == p][:, 0] for p in np.unique(patients)], 1)
    assert (per_patient.sum(axis=1) == 10).all()  # 10 patients drawn with replacement
    assert (per_patient == 0).any(axis=1).mean() > 0.9  # most resamples leave a patient out
    assert per_patient.mean() == pytest.approx(1.0, abs=0.05)


def test_patient_bootstrap_widens_intervals_for_correlated_samples() -> None:
    # 30 patients with 8 near-identical patches each: 240 samples carry the evidence of 30.
    rng = np.random.default_rng(0)
    base_label = (np.arange(30) % 2).astype(int)
    base_p = np.clip(rng.normal(0.4 + 0.2 * base_label, 0.2), 0.01, 0.99)
    label = np.repeat(base_label, 8)
    probability = np.repeat(base_p, 8) + rng.normal(0, 1e-3, 240)
    groups = np.repeat(np.arange(30), 8)
    by_sample = evaluate_with_bootstrap(label, probability, [0.5], 400, seed=1)
    by_patient = evaluate_with_bootstrap(label, probability, [0.5], 400, seed=1, groups=groups)
    width = {r.unit: np.diff(r.metrics()["auroc"]["ci95"])[0] for r in (by_sample, by_patient)}
    assert by_patient.unit == "patient" and by_patient.n_units == 30
    assert width["patient"] > 2 * width["sample"]


def test_undefined_resamples_are_left_out_and_counted() -> None:
    label = np.array([0] * 18 + [1, 1])
    probability = np.linspace(0.1, 0.9, 20)
    result = evaluate_with_bootstrap(label, probability, [0.5], n_resamples=400, seed=0)
    assert result.undefined.get("auroc", 0) > 0  # resamples without a malignant sample
    assert all(np.isfinite(result.metrics()["auroc"]["ci95"]))


def test_one_class_and_empty_sets_are_refused() -> None:
    with pytest.raises(EvaluationError, match="one class only: all 3 samples are benign"):
        check_binary(np.zeros(3, dtype=int), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(EvaluationError, match="empty"):
        check_binary(np.array([], dtype=int), np.array([]))
    with pytest.raises(EvaluationError, match="outside"):
        check_binary(np.array([0, 1]), np.array([0.1, 1.2]))


def test_no_resamples_gives_no_interval() -> None:
    label, probability = _fixed(40)
    result = evaluate_with_bootstrap(label, probability, [0.5], n_resamples=0)
    assert all(np.isnan(result.metrics()["auroc"]["ci95"]))
    assert result.metrics()["auroc"]["value"] == pytest.approx(roc_auc_score(label, probability))


def test_missing_patient_ids_are_their_own_clusters() -> None:
    import pandas as pd

    from calcinet.evaluation.run import _patients

    frame = pd.DataFrame({"id": ["a", "b", "c", "d"], "patient_id": ["p1", "p1", "", None]})
    groups = _patients(frame)
    assert len(set(groups)) == 3 and groups[0] == groups[1]
    assert _patients(frame.assign(patient_id="")) is None
    assert _patients(frame.drop(columns="patient_id")) is None
