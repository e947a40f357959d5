"""Per-group results by a metadata column (pattern, site, scanner, lesion size ...).

Every string or number column of the predictions table other than the fixed ones is a candidate:
the metadata the record source put into each sample. Numeric columns with many distinct values
are cut into quantile bins; text columns with more groups than can be read (ids, file names)
are skipped. Groups come out worst accuracy first, so the patterns a model fails on lead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

#: Columns of ``predictions.csv`` that are not metadata.
FIXED_COLUMNS = (
    "id",
    "path",
    "label",
    "probability",
    "prediction",
    "probability_tta",
    "prediction_tta",
)


#: Metadata that identifies rather than describes a sample: not broken down unless named.
IDENTITY_COLUMNS = ("patient_id", "manifest_line", "split")


def metadata_columns(predictions: pd.DataFrame) -> list[str]:
    """The metadata columns of a predictions table, in table order."""
    return [c for c in predictions.columns if c not in FIXED_COLUMNS]


def group_values(
    values: pd.Series, max_groups: int = 30, max_levels: int = 10, quantiles: int = 4
) -> tuple[pd.Series | None, str]:
    """The group of each row and how it was made, or ``(None, reason)`` when no useful grouping.

    Numbers with more than ``max_levels`` distinct values are binned into ``quantiles``
    quantile bins (labelled by their range); other columns group by value when they have
    between 2 and ``max_groups`` distinct values.
    """
    present = values.dropna()
    distinct = present.nunique()
    if distinct < 2:
        return None, "one value only"
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and distinct > max_levels:
        binned = pd.qcut(values, q=quantiles, duplicates="drop", precision=3)
        labels = binned.astype(str).where(binned.notna(), "missing")
        return labels, f"{binned.cat.categories.size} quantile bins"
    if distinct > max_groups:
        return None, f"{distinct} distinct values (more than {max_groups})"
    return values.astype(str).where(values.notna(), "missing"), "by value"


def group_table(
    label: np.ndarray, probability: np.ndarray, prediction: np.ndarray, groups: pd.Series
) -> pd.DataFrame:
    """One row per group: n, class counts, errors, accuracy, sensitivity, specificity, mean
    probability and (for groups that hold both classes) AUROC; worst accuracy first."""
    frame = pd.DataFrame(
        {
            "group": groups.to_numpy(),
            "label": label,
            "probability": probability,
            "prediction": prediction,
        }
    )
    rows: list[dict[str, Any]] = []
    for name, part in frame.groupby("group", sort=True):
        y, p, yhat = (part[c].to_numpy() for c in ("label", "probability", "prediction"))
        positives, negatives = int((y == 1).sum()), int((y == 0).sum())
        rows.append(
            {
                "group": str(name),
                "n": len(part),
                "n_malignant": positives,
                "n_benign": negatives,
                "errors": int((y != yhat).sum()),
                "accuracy": float((y == yhat).mean()),
                "sensitivity": float((yhat[y == 1] == 1).mean()) if positives else np.nan,
                "specificity": float((yhat[y == 0] == 0).mean()) if negatives else np.nan,
                "mean_probability": float(p.mean()),
                "auroc": float(roc_auc_score(y, p)) if positives and negatives else np.nan,
            }
        )
    table = pd.DataFrame(rows)
    return table.sort_values(
        ["accuracy", "n", "group"], ascending=[True, False, True], kind="mergesort"
    ).reset_index(drop=True)


def breakdowns(
    predictions: pd.DataFrame,
    columns: list[str] | None = None,
    prediction_column: str = "prediction",
    probability_column: str = "probability",
    max_groups: int = 30,
    max_levels: int = 10,
    quantiles: int = 4,
    max_columns: int = 20,
) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Group tables for ``columns`` (default: every metadata column except the identifying
    ones of :data:`IDENTITY_COLUMNS`, at most ``max_columns`` tables in table order).

    Returns ``(tables, notes)``: ``notes[column]`` says how the column was grouped or why it
    was skipped.
    """
    notes: dict[str, str] = {}
    if columns is None:
        wanted = [c for c in metadata_columns(predictions) if c not in IDENTITY_COLUMNS]
        notes.update(
            {
                c: "skipped: identifies samples (name it in breakdown.columns to break down by it)"
                for c in IDENTITY_COLUMNS
                if c in predictions.columns
            }
        )
    else:
        wanted = list(columns)
    tables: dict[str, pd.DataFrame] = {}
    for column in wanted:
        if column not in predictions.columns:
            notes[column] = "not a column of the predictions"
            continue
        if len(tables) >= max_columns:
            notes[column] = (
                f"skipped: {max_columns} columns already broken down (breakdown.max_columns)"
            )
            continue
        groups, how = group_values(predictions[column], max_groups, max_levels, quantiles)
        notes[column] = how if groups is not None else f"skipped: {how}"
        if groups is None:
            continue
        tables[column] = group_table(
            predictions["label"].to_numpy(dtype=int),
            predictions[probability_column].to_numpy(dtype=float),
            predictions[prediction_column].to_numpy(dtype=int),
            groups,
        )
    return tables, notes
