"""DeLong (fast midrank version) against its definition, a paired bootstrap and a published
example; the comparison table and `calcinet-compare`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from calcinet.cli.compare import main as compare_main
from calcinet.evaluation import EvaluationError
from calcinet.evaluation.compare import (
    align,
    compare_predictions,
    delong_covariance,
    delong_test,
    load_predictions,
)


def _delong_by_definition(label: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. (1988) literally: placement values from all m x n pairs."""
    positive, negative = scores[:, label == 1], scores[:, label == 0]
    psi = (positive[:, :, None] > negative[:, None, :]) + 0.5 * (
        positive[:, :, None] == negative[:, None, :]
    )
    v10, v01 = psi.mean(axis=2), psi.mean(axis=1)
    return v10.mean(axis=1), np.cov(v10) / positive.shape[1] + np.cov(v01) / negative.shape[1]


def _mann_whitney(label: np.ndarray, score: np.ndarray) -> float:
    """AUROC from the rank-sum statistic (fast enough for thousands of resamples)."""
    ranks = rankdata(score)
    m = int(label.sum())
    return (ranks[label == 1].sum() - m * (m + 1) / 2) / (m * (len(label) - m))


def _two_models(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    a = np.round(rng.normal(label * 1.0, 1.0), 1)  # rounded: many ties
    b = np.round(0.5 * a + rng.normal(label * 0.5, 1.0), 1)  # correlated with a
    return label, a, b


def test_fast_delong_equals_the_pairwise_definition() -> None:
    label, a, b = _two_models()
    c = np.round(np.random.default_rng(1).random(len(label)), 1)
    scores = np.vstack([a, b, c])
    auc, cov = delong_covariance(label, scores)
    auc_ref, cov_ref = _delong_by_definition(label, scores)
    np.testing.assert_allclose(auc, auc_ref, atol=1e-12)
    np.testing.assert_allclose(cov, cov_ref, atol=1e-12)
    np.testing.assert_allclose(auc, [roc_auc_score(label, s) for s in scores], atol=1e-12)


def test_delong_standard_error_matches_a_paired_bootstrap() -> None:
    label, a, b = _two_models(300, seed=2)
    test = delong_test(label, a, b)
    rng = np.random.default_rng(0)
    differences = []
    for _ in range(2000):
        i = rng.integers(0, len(label), len(label))
        differences.append(_mann_whitney(label[i], a[i]) - _mann_whitney(label[i], b[i]))
    assert test.standard_error == pytest.approx(np.std(differences), rel=0.1)
    assert test.difference == pytest.approx(roc_auc_score(label, a) - roc_auc_score(label, b))
    assert 0 < test.p_value < 1


def test_hanley_mcneil_worked_example() -> None:
    # Hanley & McNeil (Radiology 1982), Table 1: CT ratings 1-5 of 58 normal and 51 abnormal
    # patients; published AUC 0.893 with standard error 0.032. DeLong's nonparametric standard
    # error for the same data is close to theirs.
    normal, abnormal = [33, 6, 6, 11, 2], [3, 2, 2, 11, 33]
    ratings = np.r_[np.repeat(np.arange(1, 6), normal), np.repeat(np.arange(1, 6), abnormal)]
    label = np.r_[np.zeros(58), np.ones(51)].astype(int)
    auc, cov = delong_covariance(label, ratings[None].astype(float))
    assert round(float(auc[0]), 3) == 0.893
    assert np.sqrt(cov[0, 0]) == pytest.approx(0.032, abs=0.002)


def test_identical_models_do_not_differ() -> None:
    label, a, _ = _two_models()
    test = delong_test(label, a, a.copy())
    assert test.difference == 0 and test.p_value == 1.0


def test_a_clearly_better_model_is_significant() -> None:
    rng = np.random.default_rng(3)
    label = rng.integers(0, 2, 400)
    good = rng.normal(label * 2.0, 1.0)
    weak = 0.2 * good + rng.normal(label * 0.1, 1.0)
    assert delong_test(label, good, weak).p_value < 1e-4


def _write(folder: Path, ids: list[str], label: np.ndarray, probability: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "predictions.csv"
    pd.DataFrame(
        {
            "id": ids,
            "path": "",
            "label": label,
            "probability": probability,
            "prediction": (probability >= 0.5).astype(int),
            "pattern": "x",
        }
    ).to_csv(path, index=False)
    return path


def test_compare_matches_rows_by_id_and_runs_delong(tmp_path: Path) -> None:
    label, a, b = _two_models(120, seed=4)
    ids = [f"s{i:03d}" for i in range(len(label))]
    pa = 1 / (1 + np.exp(-a))
    pb = 1 / (1 + np.exp(-b))
    first = _write(tmp_path / "run_a", ids, label, pa)
    order = np.random.default_rng(0).permutation(len(ids))  # the second file in another order
    second = _write(tmp_path / "run_b", [ids[i] for i in order], label[order], pb[order])
    comparison = compare_predictions(
        [load_predictions(str(first)), load_predictions(str(tmp_path / "run_b"))]
    )
    table = comparison.table
    assert list(table["model"]) == ["run_a", "run_b"]
    assert table.loc[0, "auroc"] == pytest.approx(roc_auc_score(label, pa))
    assert table.loc[1, "auroc"] == pytest.approx(roc_auc_score(label, pb))
    assert table.loc[1, "p_value"] == pytest.approx(delong_test(label, pb, pa).p_value)
    assert np.isnan(table.loc[0, "p_value"])
    assert table.loc[0, "sensitivity"] == pytest.approx(np.mean(pa[label == 1] >= 0.5))
    assert table.loc[0, "auroc_ci95_low"] < table.loc[0, "auroc"] < table.loc[0, "auroc_ci95_high"]
    assert second.is_file()


def test_different_samples_are_refused(tmp_path: Path) -> None:
    label, a, _ = _two_models(20)
    ids = [f"s{i}" for i in range(20)]
    one = (
        "one",
        pd.read_csv(_write(tmp_path / "one", ids, label, a.clip(0, 1)), dtype={"id": str}),
    )
    other_ids = ids[:-1] + ["elsewhere"]
    two = (
        "two",
        pd.read_csv(_write(tmp_path / "two", other_ids, label, a.clip(0, 1)), dtype={"id": str}),
    )
    with pytest.raises(EvaluationError, match="different samples: 1 ids only in one"):
        align([one, two])
    flipped = ("three", one[1].assign(label=1 - one[1]["label"]))
    with pytest.raises(EvaluationError, match="disagree on the label"):
        align([one, flipped])


def test_cli_prints_the_table_and_writes_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    label, a, b = _two_models(60, seed=5)
    ids = [f"s{i}" for i in range(60)]
    _write(tmp_path / "a", ids, label, 1 / (1 + np.exp(-a)))
    _write(tmp_path / "b", ids, label, 1 / (1 + np.exp(-b)))
    compare_main(
        [
            str(tmp_path / "a"),
            str(tmp_path / "b" / "predictions.csv"),
            "--names",
            "baseline",
            "candidate",
            "--output-path",
            str(tmp_path / "t.csv"),
        ]
    )
    out = capsys.readouterr().out
    assert "baseline" in out and "candidate" in out and "p (DeLong)" in out
    written = pd.read_csv(tmp_path / "t.csv")
    assert list(written["model"]) == ["baseline", "candidate"]


def test_cli_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    label, a, _ = _two_models(20)
    _write(tmp_path / "a", [f"s{i}" for i in range(20)], label, a.clip(0, 1))
    _write(tmp_path / "b", [f"t{i}" for i in range(20)], label, a.clip(0, 1))
    with pytest.raises(SystemExit) as exit_info:
        compare_main([str(tmp_path / "a"), str(tmp_path / "b")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "calcinet: error: b and a were evaluated on different samples"
    )
    with pytest.raises(SystemExit):
        compare_main([str(tmp_path / "a"), str(tmp_path / "missing.csv")])
    assert "not a predictions.csv file" in capsys.readouterr().err


def test_reports_naming_different_data_give_a_warning(tmp_path: Path) -> None:
    label, a, b = _two_models(30, seed=6)
    ids = [f"s{i}" for i in range(30)]
    for folder, fingerprint, score in (("a", "aaaa", a), ("b", "bbbb", b)):
        _write(tmp_path / folder, ids, label, 1 / (1 + np.exp(-score)))
        report = {"data": {"fingerprint": fingerprint, "split": "test"}}
        (tmp_path / folder / "report.json").write_text(json.dumps(report))
    comparison = compare_predictions(
        [load_predictions(str(tmp_path / "a")), load_predictions(str(tmp_path / "b"))]
    )
    (warning,) = comparison.warnings
    assert "fingerprint bbbb, split test vs aaaa, split test" in warning
