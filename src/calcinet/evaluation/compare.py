"""Compare models evaluated on the same samples: AUROC with DeLong intervals and paired DeLong
tests of each model against the first.

DeLong, DeLong & Clarke-Pearson (Biometrics 1988) estimate the covariance of correlated AUROCs
from each sample's *placement value* (its share of the other class it out-ranks). Sun & Xu (IEEE
Signal Processing Letters 2014) compute the placement values from midranks, in O(n log n)
instead of O(m n): that is :func:`delong_covariance`.

Inputs are ``predictions.csv`` files of ``calcinet-evaluate`` (or their run folders, or the
MLflow ids of evaluation runs, whose ``predictions.csv`` artifact is downloaded). Rows are
matched by ``id``; the models must have been evaluated on exactly the same samples.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm, rankdata
from sklearn.metrics import average_precision_score

from calcinet.evaluation import EvaluationError
from calcinet.tracking import resolve_tracking_uri

_RUN_ID = re.compile(r"[0-9a-f]{32}")


def delong_covariance(label: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs ``[k]`` and their DeLong covariance ``[k, k]`` for ``scores`` ``[k, n]`` of the
    same ``n`` samples (fast midrank algorithm of Sun & Xu 2014; ties count one half)."""
    label = np.asarray(label).astype(int)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    positive, negative = scores[:, label == 1], scores[:, label == 0]
    m, n = positive.shape[1], negative.shape[1]
    if m == 0 or n == 0:
        raise EvaluationError("DeLong needs both classes among the labels")
    # Midranks within each class and over both classes together.
    rank_pos = rankdata(positive, axis=1)
    rank_neg = rankdata(negative, axis=1)
    rank_all = rankdata(np.concatenate([positive, negative], axis=1), axis=1)
    # Placement values: the share of negatives below each positive (v10) and of positives
    # above each negative (v01), ties counted one half.
    v10 = (rank_all[:, :m] - rank_pos) / n
    v01 = 1.0 - (rank_all[:, m:] - rank_neg) / m
    auc = v10.mean(axis=1)
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((len(auc), len(auc)))
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((len(auc), len(auc)))
    return auc, s10 / m + s01 / n


@dataclass(frozen=True)
class DeLongTest:
    """Paired DeLong test of ``auc_a - auc_b`` (two-sided)."""

    auc_a: float
    auc_b: float
    difference: float
    standard_error: float
    z: float
    p_value: float


def delong_test(label: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> DeLongTest:
    """Is the AUROC of ``score_a`` different from that of ``score_b`` on the same samples?"""
    auc, cov = delong_covariance(label, np.vstack([score_a, score_b]))
    variance = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    difference = float(auc[0] - auc[1])
    if variance <= 1e-15:
        # Identical rankings: no difference and no evidence of one.
        z, p = 0.0, 1.0
    else:
        z = difference / np.sqrt(variance)
        p = float(2 * norm.sf(abs(z)))
    return DeLongTest(
        float(auc[0]), float(auc[1]), difference, float(np.sqrt(max(variance, 0.0))), float(z), p
    )


def delong_interval(auc: float, variance: float, level: float = 0.95) -> tuple[float, float]:
    """Normal-approximation interval of one AUROC from its DeLong variance, clipped to [0, 1]."""
    half = norm.ppf(0.5 + level / 2) * np.sqrt(max(variance, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


# --- inputs -----------------------------------------------------------------------------------


def load_predictions(source: str, tracking_uri: str | None = None) -> tuple[str, pd.DataFrame]:
    """``(name, table)`` of a ``predictions.csv`` file, a folder holding one, or an MLflow run
    id of an evaluation run (its ``predictions.csv`` artifact)."""
    path = Path(source)
    if path.is_dir():
        path = path / "predictions.csv"
        if not path.is_file():
            raise EvaluationError(f"{source}: folder without a predictions.csv")
    if path.is_file():
        name = path.parent.name if path.name == "predictions.csv" else path.stem
        table = _read(path, str(path))
        report = path.parent / "report.json"
        if report.is_file():
            try:
                data = json.loads(report.read_text()).get("data") or {}
            except (OSError, json.JSONDecodeError):
                data = {}
            table.attrs["data"] = (data.get("fingerprint"), data.get("split"))
        return name or str(path), table
    if _RUN_ID.fullmatch(source):
        return _download(source, tracking_uri)
    raise EvaluationError(
        f"{source}: not a predictions.csv file, a folder with one, or an MLflow run id "
        "(32 hexadecimal characters)"
    )


def _read(path: Path, shown: str) -> pd.DataFrame:
    try:
        table = pd.read_csv(
            path,
            dtype={"id": str},
            keep_default_na=False,
            na_values={"probability": [""], "probability_tta": [""]},
        )
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise EvaluationError(f"{shown}: cannot read it as CSV ({error})") from None
    missing = [c for c in ("id", "label", "probability") if c not in table.columns]
    if missing:
        raise EvaluationError(
            f"{shown}: no column {', '.join(missing)}; expected the predictions.csv of "
            "calcinet-evaluate (id, path, label, probability, prediction, ...)"
        )
    duplicated = table["id"][table["id"].duplicated()].unique()
    if len(duplicated):
        raise EvaluationError(f"{shown}: id {duplicated[0]!r} appears more than once")
    return table


def _download(run_id: str, tracking_uri: str | None) -> tuple[str, pd.DataFrame]:
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if tracking_uri is None:
        tracking_uri = resolve_tracking_uri()
    quiet = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    saved = {key: os.environ.get(key) for key in quiet}
    os.environ.update(quiet)
    try:
        run = MlflowClient(tracking_uri=tracking_uri).get_run(run_id)
        with tempfile.TemporaryDirectory() as folder:
            local = download_artifacts(
                run_id=run_id,
                artifact_path="predictions.csv",
                dst_path=folder,
                tracking_uri=tracking_uri,
            )
            table = _read(Path(local), f"MLflow run {run_id}")
    except MlflowException as error:
        raise EvaluationError(
            f"MLflow run {run_id} in {tracking_uri}: no predictions.csv artifact to compare "
            f"({str(error).splitlines()[0]}); give the id of a calcinet-evaluate run"
        ) from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    tags = run.data.tags
    table.attrs["data"] = (tags.get("calcinet.data_fingerprint"), tags.get("calcinet.split"))
    name = run.info.run_name
    return (f"{name} ({run_id[:8]})" if name else run_id), table


def align(named: Sequence[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """The tables joined on ``id`` in the first table's order; errors unless every table holds
    the same ids with the same labels."""
    first_name, first = named[0]
    reference = first.set_index("id")
    for name, table in named[1:]:
        ids = table.set_index("id")
        only_first = reference.index.difference(ids.index)
        only_here = ids.index.difference(reference.index)
        if len(only_first) or len(only_here):
            parts = [
                f"{len(only)} ids only in {where} (e.g. {', '.join(map(repr, only[:3]))})"
                for only, where in ((only_first, first_name), (only_here, name))
                if len(only)
            ]
            raise EvaluationError(
                f"{name} and {first_name} were evaluated on different samples: "
                f"{'; '.join(parts)}; paired comparisons need the same evaluation set"
            )
        labels = ids.loc[reference.index, "label"].astype(int)
        differ = labels.index[labels.to_numpy() != reference["label"].astype(int).to_numpy()]
        if len(differ):
            raise EvaluationError(
                f"{name} and {first_name} disagree on the label of {len(differ)} samples "
                f"(e.g. id {differ[0]!r}): not the same evaluation set"
            )
    return reference


def data_warnings(named: Sequence[tuple[str, pd.DataFrame]]) -> list[str]:
    """Doubts about the pairing: inputs whose reports name different data (fingerprint, split).

    Matching ids and labels are required (:func:`align`); a different data fingerprint is only
    a warning, because a fingerprint also changes with settings that leave the evaluation
    samples alone (e.g. the size of the training split of a synthetic source).
    """
    first_name, first = named[0]
    reference = first.attrs.get("data")
    warnings = []
    for name, table in named[1:]:
        data = table.attrs.get("data")
        if reference and data and all(reference) and all(data) and data != reference:
            warnings.append(
                f"{name} and {first_name} name different evaluation data (fingerprint "
                f"{data[0]}, split {data[1]} vs {reference[0]}, split {reference[1]}); ids "
                "and labels match, so they are compared"
            )
    return warnings


@dataclass(frozen=True)
class Comparison:
    """The side-by-side table and what it was computed from."""

    table: pd.DataFrame
    column: str
    n: int
    n_malignant: int
    warnings: tuple[str, ...] = ()


def compare_predictions(named: Sequence[tuple[str, pd.DataFrame]], tta: bool = False) -> Comparison:
    """One row per model: AUROC with its DeLong 95 % interval, AP, sensitivity and specificity
    (at each model's own stored operating threshold, from its ``prediction`` column), and the
    AUROC difference to the first model with the paired DeLong p-value."""
    if len(named) < 2:
        raise EvaluationError(f"{len(named)} prediction file(s): expected at least two to compare")
    column = "probability_tta" if tta else "probability"
    decision = "prediction_tta" if tta else "prediction"
    for name, table in named:
        if column not in table.columns:
            raise EvaluationError(f"{name}: no {column} column (evaluate with tta=true)")
    reference = align(named)
    label = reference["label"].to_numpy(dtype=int)
    if len(np.unique(label)) < 2:
        raise EvaluationError("the evaluation set holds one class only: AUROC is undefined")
    scores = np.vstack(
        [
            table.set_index("id").loc[reference.index, column].to_numpy(dtype=float)
            for _, table in named
        ]
    )
    auc, cov = delong_covariance(label, scores)
    rows = []
    for k, (name, table) in enumerate(named):
        indexed = table.set_index("id").loc[reference.index]
        if decision in indexed.columns:
            predicted = indexed[decision].to_numpy(dtype=int)
        else:
            predicted = (scores[k] >= 0.5).astype(int)
        low, high = delong_interval(auc[k], cov[k, k])
        row = {
            "model": name,
            "auroc": float(auc[k]),
            "auroc_ci95_low": low,
            "auroc_ci95_high": high,
            "ap": float(average_precision_score(label, scores[k])),
            "sensitivity": float(np.mean(predicted[label == 1] == 1)),
            "specificity": float(np.mean(predicted[label == 0] == 0)),
            "delta_auroc": np.nan,
            "p_value": np.nan,
        }
        if k > 0:
            test = delong_test(label, scores[k], scores[0])
            row["delta_auroc"], row["p_value"] = test.difference, test.p_value
        rows.append(row)
    return Comparison(
        pd.DataFrame(rows), column, len(label), int(label.sum()), tuple(data_warnings(named))
    )


def format_table(comparison: Comparison, markdown: bool = False) -> str:
    """The comparison as an aligned plain-text table, or a Markdown table."""
    header = [
        "model",
        "AUROC (95% CI, DeLong)",
        "AP",
        "sensitivity",
        "specificity",
        "dAUROC vs first",
        "p (DeLong)",
    ]
    rows = []
    for row in comparison.table.itertuples():
        first = np.isnan(row.p_value)
        rows.append(
            [
                str(row.model),
                f"{row.auroc:.3f} ({row.auroc_ci95_low:.3f}-{row.auroc_ci95_high:.3f})",
                f"{row.ap:.3f}",
                f"{row.sensitivity:.3f}",
                f"{row.specificity:.3f}",
                "reference" if first else f"{row.delta_auroc:+.3f}",
                "" if first else (f"{row.p_value:.4f}" if row.p_value >= 1e-4 else "<0.0001"),
            ]
        )
    footer = (
        f"{comparison.n} samples ({comparison.n_malignant} malignant) matched by id; "
        f"scores: {comparison.column}; sensitivity and specificity at each model's own "
        "stored operating threshold; p: paired two-sided DeLong test against the first model."
    )
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join([*lines, "", footer])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join([*lines, footer])
