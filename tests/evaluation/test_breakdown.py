"""Breakdowns by metadata: by value, quantile bins for numbers, skipped id-like columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from calcinet.evaluation.breakdown import breakdowns, metadata_columns
from calcinet.evaluation.report import to_jsonable


def _predictions() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 40
    label = np.r_[np.zeros(20, int), np.ones(20, int)]
    probability = np.clip(rng.normal(0.3 + 0.4 * label, 0.2), 0, 1)
    pattern = np.where(label == 1, "osteosarcoma", "phlebolith")
    pattern[::7] = "mixed_site"
    return pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(n)],
            "path": "",
            "label": label,
            "probability": probability,
            "prediction": (probability >= 0.5).astype(int),
            "pattern": pattern,
            "size_mm": rng.uniform(2, 60, n).round(1),
            "patient_id": [f"p{i}" for i in range(n)],
            "filename": [f"f{i}.nii.gz" for i in range(n)],
            "site": "A",
        }
    )


def test_groups_by_pattern_worst_first() -> None:
    predictions = _predictions()
    assert metadata_columns(predictions) == ["pattern", "size_mm", "patient_id", "filename", "site"]
    tables, notes = breakdowns(predictions)
    table = tables["pattern"]
    assert table["n"].sum() == len(predictions)
    assert list(table["accuracy"]) == sorted(table["accuracy"])
    for row in table.itertuples():
        part = predictions[predictions["pattern"] == row.group]
        assert row.accuracy == pytest.approx((part["label"] == part["prediction"]).mean())
        assert row.mean_probability == pytest.approx(part["probability"].mean())
        if part["label"].nunique() == 2:
            assert row.auroc == pytest.approx(roc_auc_score(part["label"], part["probability"]))
        else:
            assert np.isnan(row.auroc)
    assert notes["pattern"] == "by value"


def test_numeric_columns_are_binned_and_id_columns_skipped() -> None:
    tables, notes = breakdowns(_predictions())
    assert notes["size_mm"] == "4 quantile bins"
    assert len(tables["size_mm"]) == 4 and tables["size_mm"]["n"].sum() == 40
    assert "filename" not in tables and notes["filename"].startswith("skipped: 40 distinct")
    assert "site" not in tables and notes["site"] == "skipped: one value only"
    # Identifying columns only when asked for; the number of tables is capped.
    assert notes["patient_id"].startswith("skipped: identifies samples")
    tables, notes = breakdowns(_predictions(), columns=["patient_id"], max_groups=50)
    assert len(tables["patient_id"]) == 40
    tables, notes = breakdowns(_predictions(), max_columns=1)
    assert list(tables) == ["pattern"] and "breakdown.max_columns" in notes["size_mm"]


def test_report_json_has_no_nan() -> None:
    import json

    tables, _ = breakdowns(_predictions())
    table = tables["pattern"]
    assert table["auroc"].isna().sum() == 2  # the two one-class patterns
    rows = to_jsonable(table.to_dict("records"))
    json.dumps(rows, allow_nan=False)  # strict JSON: raises on a NaN left behind
    for row, auroc in zip(rows, table["auroc"], strict=True):
        assert (row["auroc"] is None) == bool(np.isnan(auroc))
        if row["auroc"] is not None:
            assert row["auroc"] == pytest.approx(auroc)
