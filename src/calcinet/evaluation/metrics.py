"""Metrics of malignancy probabilities, with percentile-bootstrap 95 % confidence intervals.

Point estimates come from scikit-learn. The bootstrap needs the same metrics on 1000 resamples,
which scikit-learn would compute one at a time; here a resample is a row of integer *weights*
(how often each sample was drawn), so every resample is a matrix product or a cumulative sum over
the samples sorted once by probability. With unit weights these give scikit-learn's numbers (the
tests check it), and with the counts of a resample they give scikit-learn's numbers on the
resampled arrays.

A prediction is malignant when ``probability >= threshold``: the convention of the ROC curve on
which the operating threshold was chosen (a ROC threshold ``t`` means "positive if score >= t").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from calcinet.evaluation import EvaluationError

#: Every metric of the report, in the order it is shown.
METRIC_NAMES = (
    "auroc",
    "ap",
    "accuracy",
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "f1",
    "brier",
    "ece",
)
#: The metrics that depend on the decision threshold.
THRESHOLD_METRICS = ("accuracy", "sensitivity", "specificity", "ppv", "npv", "f1")
#: Readable names for tables and figures.
METRIC_TITLES = {
    "auroc": "AUROC",
    "ap": "Average precision",
    "accuracy": "Accuracy",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "ppv": "PPV",
    "npv": "NPV",
    "f1": "F1",
    "brier": "Brier score",
    "ece": "ECE",
}

# Bound on the size of one block of bootstrap weights (resamples x samples), ~32 MB of float64.
_BLOCK_CELLS = 4_000_000


def check_binary(label: np.ndarray, probability: np.ndarray, what: str = "evaluation set") -> None:
    """Raise :class:`EvaluationError` unless the set is non-empty, has both classes and valid
    probabilities; every metric of the report needs both classes."""
    if len(label) == 0:
        raise EvaluationError(f"the {what} is empty: there is nothing to evaluate")
    if len(label) != len(probability):
        raise EvaluationError(f"{len(label)} labels but {len(probability)} probabilities")
    values = set(np.unique(label).tolist())
    if not values <= {0, 1}:
        raise EvaluationError(f"labels {sorted(values)}: expected 0 (benign) and 1 (malignant)")
    if len(values) < 2:
        only = "benign (label 0)" if values == {0} else "malignant (label 1)"
        raise EvaluationError(
            f"the {what} holds one class only: all {len(label)} samples are {only}; AUROC, "
            "sensitivity and specificity need both classes"
        )
    if not np.all(np.isfinite(probability)) or probability.min() < 0 or probability.max() > 1:
        raise EvaluationError(
            "probabilities outside [0, 1] (or not finite): expected sigmoid outputs"
        )


def calibration_bins(
    label: np.ndarray, probability: np.ndarray, n_bins: int = 10
) -> list[dict[str, float]]:
    """Equal-width bins of the probability: count, mean probability, fraction malignant.

    Bin ``b`` holds ``edges[b] <= p < edges[b + 1]``; the last bin also holds ``p == 1``.
    """
    index = _bin_index(probability, n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = []
    for b in range(n_bins):
        inside = index == b
        count = int(inside.sum())
        bins.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": count,
                "mean_probability": float(probability[inside].mean()) if count else float("nan"),
                "fraction_malignant": float(label[inside].mean()) if count else float("nan"),
            }
        )
    return bins


def expected_calibration_error(
    label: np.ndarray, probability: np.ndarray, n_bins: int = 10
) -> float:
    """ECE of the malignancy probability: ``sum_b n_b / n * |mean(p)_b - mean(y)_b|`` over
    ``n_bins`` equal-width bins (the definition of torchmetrics' ``BinaryCalibrationError``)."""
    bins = calibration_bins(label, probability, n_bins)
    n = len(label)
    return float(
        sum(
            b["count"] / n * abs(b["mean_probability"] - b["fraction_malignant"])
            for b in bins
            if b["count"]
        )
    )


def _bin_index(probability: np.ndarray, n_bins: int) -> np.ndarray:
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], probability, side="right")


def point_metrics(
    label: np.ndarray, probability: np.ndarray, threshold: float, n_bins: int = 10
) -> dict[str, float]:
    """Every metric of :data:`METRIC_NAMES` (scikit-learn), decisions at ``p >= threshold``.

    A ratio whose denominator is zero (PPV with no malignant prediction) is NaN, not 0.
    """
    label = np.asarray(label, dtype=int)
    probability = np.asarray(probability, dtype=float)
    predicted = (probability >= threshold).astype(int)
    nan = np.nan
    return {
        "auroc": float(roc_auc_score(label, probability)),
        "ap": float(average_precision_score(label, probability)),
        "accuracy": float(accuracy_score(label, predicted)),
        "sensitivity": float(recall_score(label, predicted, zero_division=nan)),
        "specificity": float(recall_score(label, predicted, pos_label=0, zero_division=nan)),
        "ppv": float(precision_score(label, predicted, zero_division=nan)),
        "npv": float(precision_score(label, predicted, pos_label=0, zero_division=nan)),
        "f1": float(f1_score(label, predicted, zero_division=nan)),
        "brier": float(brier_score_loss(label, probability)),
        "ece": expected_calibration_error(label, probability, n_bins),
    }


def confusion_counts(
    label: np.ndarray, probability: np.ndarray, threshold: float
) -> dict[str, int]:
    """``{"tp", "fp", "tn", "fn"}`` at ``p >= threshold``."""
    label = np.asarray(label, dtype=int)
    predicted = np.asarray(probability) >= threshold
    return {
        "tp": int(np.sum(predicted & (label == 1))),
        "fp": int(np.sum(predicted & (label == 0))),
        "tn": int(np.sum(~predicted & (label == 0))),
        "fn": int(np.sum(~predicted & (label == 1))),
    }


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(np.shape(numerator), np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def weighted_metrics(
    label: np.ndarray,
    probability: np.ndarray,
    weights: np.ndarray,
    thresholds: Sequence[float],
    n_bins: int = 10,
) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    """The metrics of every row of ``weights`` ([B, n] sample counts), all rows at once.

    Returns ``(threshold_free, per_threshold)``: ``{"auroc", "ap", "brier", "ece"} -> [B]`` and,
    for each threshold, ``{name in THRESHOLD_METRICS} -> [B]``. A metric undefined for a row
    (a resample with one class only) is NaN.
    """
    label = np.asarray(label, dtype=float)
    probability = np.asarray(probability, dtype=float)
    weights = np.atleast_2d(np.asarray(weights, dtype=float))

    # Sort once; one group per distinct probability (tied scores count half in the AUROC).
    order = np.argsort(probability, kind="mergesort")
    sorted_p = probability[order]
    group_end = np.r_[np.nonzero(np.diff(sorted_p))[0], len(sorted_p) - 1]
    w_sorted = weights[:, order]
    y_sorted = label[order]
    cum_pos = np.cumsum(w_sorted * y_sorted, axis=1)[:, group_end]
    cum_neg = np.cumsum(w_sorted * (1.0 - y_sorted), axis=1)[:, group_end]
    group_pos = np.diff(cum_pos, axis=1, prepend=0.0)
    group_neg = np.diff(cum_neg, axis=1, prepend=0.0)
    total_pos, total_neg = cum_pos[:, -1], cum_neg[:, -1]

    # AUROC (Mann-Whitney): P(score_pos > score_neg) + 0.5 P(tie).
    below_or_tied = cum_neg - 0.5 * group_neg
    auroc = _ratio(np.sum(group_pos * below_or_tied, axis=1), total_pos * total_neg)

    # Average precision: sum over thresholds (descending) of recall increment x precision.
    tp_at = total_pos[:, None] - (cum_pos - group_pos)
    fp_at = total_neg[:, None] - (cum_neg - group_neg)
    precision = _ratio(tp_at, tp_at + fp_at)
    ap = _ratio(np.sum(group_pos * np.nan_to_num(precision), axis=1), total_pos)

    total = weights.sum(axis=1)
    brier = _ratio(weights @ (probability - label) ** 2, total)

    one_hot = np.eye(n_bins)[_bin_index(probability, n_bins)]
    bin_p = weights @ (one_hot * probability[:, None])
    bin_y = weights @ (one_hot * label[:, None])
    ece = _ratio(np.abs(bin_p - bin_y).sum(axis=1), total)

    threshold_free = {"auroc": auroc, "ap": ap, "brier": brier, "ece": ece}
    per_threshold = []
    for threshold in thresholds:
        positive = (probability >= threshold).astype(float)
        tp = weights @ (label * positive)
        fp = weights @ ((1 - label) * positive)
        fn = weights @ (label * (1 - positive))
        tn = weights @ ((1 - label) * (1 - positive))
        per_threshold.append(
            {
                "accuracy": _ratio(tp + tn, total),
                "sensitivity": _ratio(tp, tp + fn),
                "specificity": _ratio(tn, tn + fp),
                "ppv": _ratio(tp, tp + fp),
                "npv": _ratio(tn, tn + fn),
                "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            }
        )
    return threshold_free, per_threshold


def bootstrap_weights(
    n_samples: int,
    n_resamples: int,
    seed: int,
    groups: np.ndarray | None = None,
    block: int | None = None,
) -> Iterator[np.ndarray]:
    """Blocks of bootstrap weights ``[b, n_samples]``: how often each sample was drawn.

    Without ``groups`` every sample is drawn independently (``n_samples`` draws with
    replacement). With ``groups`` (e.g. patient ids) the *groups* are drawn with replacement
    (cluster bootstrap) and every sample of a drawn group comes along, so correlated samples of
    one patient never count as independent evidence.
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        codes = np.arange(n_samples)
        n_units = n_samples
    else:
        _, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
        n_units = int(codes.max()) + 1
    block = block or max(1, min(n_resamples, _BLOCK_CELLS // max(1, n_samples)))
    uniform = np.full(n_units, 1.0 / n_units)
    done = 0
    while done < n_resamples:
        size = min(block, n_resamples - done)
        counts = rng.multinomial(n_units, uniform, size=size)
        yield counts[:, codes].astype(float)
        done += size


@dataclass
class BootstrapResult:
    """Point estimates and 95 % percentile intervals of the metrics at each threshold."""

    thresholds: list[float]
    point: list[dict[str, float]]
    ci95: list[dict[str, list[float]]]
    n_resamples: int
    seed: int
    unit: str
    n_units: int
    #: Resamples in which a metric was undefined (e.g. one class only), per metric, at the
    #: first threshold; they are left out of the interval.
    undefined: dict[str, int] = field(default_factory=dict)

    def metrics(self, index: int = 0, names: Sequence[str] = METRIC_NAMES) -> dict[str, Any]:
        """``{name: {"value": x, "ci95": [low, high]}}`` at threshold number ``index``."""
        return {
            name: {"value": self.point[index][name], "ci95": self.ci95[index][name]}
            for name in names
        }


def evaluate_with_bootstrap(
    label: np.ndarray,
    probability: np.ndarray,
    thresholds: Sequence[float],
    n_resamples: int = 1000,
    seed: int = 0,
    groups: np.ndarray | None = None,
    n_bins: int = 10,
) -> BootstrapResult:
    """Point metrics (scikit-learn) and percentile-bootstrap 95 % intervals at each threshold.

    The threshold-free metrics (AUROC, AP, Brier, ECE) are the same at every threshold. The
    intervals are NaN when ``n_resamples`` is 0.
    """
    label = np.asarray(label, dtype=int)
    probability = np.asarray(probability, dtype=float)
    check_binary(label, probability)
    thresholds = [float(t) for t in thresholds]
    point = [point_metrics(label, probability, t, n_bins) for t in thresholds]

    free: dict[str, list[np.ndarray]] = {}
    per: list[dict[str, list[np.ndarray]]] = [{} for _ in thresholds]
    from calcinet.progress import bar

    shown = bar(total=n_resamples, desc="bootstrap", unit="resample")
    for weights in bootstrap_weights(len(label), n_resamples, seed, groups):
        shown.update(len(weights))
        block_free, block_per = weighted_metrics(label, probability, weights, thresholds, n_bins)
        for name, values in block_free.items():
            free.setdefault(name, []).append(values)
        for store, values_at in zip(per, block_per, strict=True):
            for name, values in values_at.items():
                store.setdefault(name, []).append(values)

    shown.close()

    def interval(chunks: list[np.ndarray] | None) -> list[float]:
        values = np.concatenate(chunks) if chunks else np.array([])
        values = values[np.isfinite(values)]
        if not len(values):
            return [float("nan"), float("nan")]
        low, high = np.percentile(values, [2.5, 97.5])
        return [float(low), float(high)]

    def undefined(chunks: list[np.ndarray] | None) -> int:
        return int(np.sum(~np.isfinite(np.concatenate(chunks)))) if chunks else 0

    ci95 = []
    for store in per:
        ci95.append(
            {
                name: interval(free.get(name) if name in free else store.get(name))
                for name in METRIC_NAMES
            }
        )
    missing = {
        name: undefined(free.get(name) if name in free else per[0].get(name))
        for name in METRIC_NAMES
    }
    n_units = len(label) if groups is None else len(np.unique(np.asarray(groups).astype(str)))
    return BootstrapResult(
        thresholds=thresholds,
        point=point,
        ci95=ci95,
        n_resamples=int(n_resamples),
        seed=int(seed),
        unit="sample" if groups is None else "patient",
        n_units=n_units,
        undefined={k: v for k, v in missing.items() if v},
    )


# --- curves: decision curve and bootstrap bands -----------------------------------------------
#: Threshold probabilities of the decision curve: 1 % to 99 % in steps of 1 %.
DECISION_THRESHOLDS = np.round(np.arange(1, 100) / 100, 2)
#: Where the ROC band is read (false-positive rate) and the PR band (recall).
FPR_GRID = np.linspace(0.0, 1.0, 101)
RECALL_GRID = np.linspace(0.01, 1.0, 100)


def net_benefit(
    label: np.ndarray,
    probability: np.ndarray,
    thresholds: Sequence[float] | np.ndarray = DECISION_THRESHOLDS,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Net benefit of treating the findings with ``probability >= pt``, for each threshold
    probability ``pt`` (Vickers & Elkin, Med Decis Making 2006;26:565-574):

        NB(pt) = TP / n - FP / n * pt / (1 - pt)

    a true positive counts 1 and a false positive ``pt / (1 - pt)``, the exchange rate a reader
    accepts when choosing ``pt``. With ``weights`` (``[B, n]`` bootstrap counts) the counts are
    weighted and the result is ``[B, T]``; otherwise ``[T]``.

    Raises:
        ValueError: a threshold outside (0, 1).
    """
    thresholds = np.asarray(thresholds, dtype=float)
    if np.any((thresholds <= 0) | (thresholds >= 1)):
        raise ValueError(f"decision thresholds {thresholds.tolist()}: expected 0 < pt < 1")
    label = np.asarray(label, dtype=float)
    treated = (np.asarray(probability, dtype=float)[:, None] >= thresholds[None, :]).astype(float)
    rows = np.ones((1, len(label))) if weights is None else np.atleast_2d(weights)
    n = rows.sum(axis=1, keepdims=True)
    tp = rows @ (label[:, None] * treated)
    fp = rows @ ((1.0 - label)[:, None] * treated)
    result = _ratio(tp, n) - _ratio(fp, n) * (thresholds / (1.0 - thresholds))[None, :]
    return result[0] if weights is None else result


def treat_all_net_benefit(
    label: np.ndarray, thresholds: Sequence[float] | np.ndarray = DECISION_THRESHOLDS
) -> np.ndarray:
    """Net benefit of treating every finding: ``prevalence - (1 - prevalence) * pt / (1 - pt)``
    (treating none is 0 at every threshold)."""
    prevalence = float(np.mean(np.asarray(label, dtype=float)))
    thresholds = np.asarray(thresholds, dtype=float)
    return prevalence - (1.0 - prevalence) * thresholds / (1.0 - thresholds)


def _curve_points(
    label: np.ndarray, probability: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted true- and false-positive counts at every distinct probability (``p >= p_g``,
    thresholds ascending) and the class totals, each ``[B, G]`` / ``[B]``."""
    order = np.argsort(probability, kind="mergesort")
    sorted_p = probability[order]
    group_end = np.r_[np.nonzero(np.diff(sorted_p))[0], len(sorted_p) - 1]
    w_sorted, y_sorted = weights[:, order], label[order]
    cum_pos = np.cumsum(w_sorted * y_sorted, axis=1)[:, group_end]
    cum_neg = np.cumsum(w_sorted * (1.0 - y_sorted), axis=1)[:, group_end]
    total_pos, total_neg = cum_pos[:, -1], cum_neg[:, -1]
    tp = total_pos[:, None] - np.c_[np.zeros(len(weights)), cum_pos[:, :-1]]
    fp = total_neg[:, None] - np.c_[np.zeros(len(weights)), cum_neg[:, :-1]]
    return tp, fp, total_pos, total_neg


def roc_at(
    label: np.ndarray,
    probability: np.ndarray,
    weights: np.ndarray | None = None,
    grid: np.ndarray = FPR_GRID,
) -> np.ndarray:
    """Sensitivity at each false-positive rate of ``grid`` on the ROC curve (points joined by
    straight lines, the curve whose area is the AUROC), ``[B, len(grid)]`` for ``[B, n]``
    ``weights`` (NaN for a resample without both classes) or ``[len(grid)]`` without."""
    label, probability = np.asarray(label, float), np.asarray(probability, float)
    rows = np.ones((1, len(label))) if weights is None else np.atleast_2d(weights)
    tp, fp, total_pos, total_neg = _curve_points(label, probability, rows)
    out = np.full((len(rows), len(grid)), np.nan)
    for b in range(len(rows)):
        if total_pos[b] == 0 or total_neg[b] == 0:
            continue
        # (0, 0) then thresholds from the highest down: both rates non-decreasing.
        fpr = np.r_[0.0, fp[b, ::-1] / total_neg[b]]
        tpr = np.r_[0.0, tp[b, ::-1] / total_pos[b]]
        # The last point at or left of f (the top of a vertical step) and the first right of it.
        after = np.searchsorted(fpr, grid, side="right")
        at = after - 1
        nxt = np.minimum(after, len(fpr) - 1)
        run = fpr[nxt] - fpr[at]
        slope = _ratio(tpr[nxt] - tpr[at], run)
        out[b] = tpr[at] + np.where(run > 0, (grid - fpr[at]) * np.nan_to_num(slope), 0.0)
    return out[0] if weights is None else out


def precision_at(
    label: np.ndarray,
    probability: np.ndarray,
    weights: np.ndarray | None = None,
    grid: np.ndarray = RECALL_GRID,
) -> np.ndarray:
    """Precision at each recall of ``grid`` (0 < r <= 1): the precision at the highest threshold
    whose recall reaches ``r``, the step curve whose area is the average precision. Shapes as in
    :func:`roc_at`."""
    label, probability = np.asarray(label, float), np.asarray(probability, float)
    rows = np.ones((1, len(label))) if weights is None else np.atleast_2d(weights)
    tp, fp, total_pos, _ = _curve_points(label, probability, rows)
    out = np.full((len(rows), len(grid)), np.nan)
    for b in range(len(rows)):
        if total_pos[b] == 0:
            continue
        recall = tp[b, ::-1] / total_pos[b]  # thresholds from the highest down: non-decreasing
        precision = tp[b, ::-1] / np.maximum(tp[b, ::-1] + fp[b, ::-1], 1e-300)
        out[b] = precision[np.searchsorted(recall, grid - 1e-12, side="left")]
    return out[0] if weights is None else out


@dataclass
class CurveBands:
    """Point curves and 95 % percentile bands (2.5 %, 97.5 %) on fixed grids.

    ``roc``: sensitivity at :data:`FPR_GRID`; ``pr``: precision at :data:`RECALL_GRID`;
    ``net_benefit``: at :data:`DECISION_THRESHOLDS` and any extra thresholds. Each entry is
    ``{"grid", "value", "low", "high"}`` (arrays); the bands are NaN without resamples.
    """

    roc: dict[str, np.ndarray]
    pr: dict[str, np.ndarray]
    net_benefit: dict[str, np.ndarray]
    n_resamples: int
    unit: str


def curve_bands(
    label: np.ndarray,
    probability: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    groups: np.ndarray | None = None,
    extra_thresholds: Sequence[float] = (),
) -> CurveBands:
    """ROC, precision-recall and decision curves with percentile-bootstrap bands.

    The resamples are those of :func:`evaluate_with_bootstrap` with the same ``n_resamples``,
    ``seed`` and ``groups`` (patients when given): the bands and the metric intervals of a report
    come from the same draws. ``extra_thresholds`` (in (0, 1), e.g. the operating threshold) join
    :data:`DECISION_THRESHOLDS` on the decision curve's grid.
    """
    label = np.asarray(label, dtype=int)
    probability = np.asarray(probability, dtype=float)
    check_binary(label, probability)
    decision_grid = np.unique(
        np.r_[DECISION_THRESHOLDS, [t for t in extra_thresholds if 0 < t < 1]]
    )
    curves = {
        "roc": (FPR_GRID, lambda w: roc_at(label, probability, w, FPR_GRID)),
        "pr": (RECALL_GRID, lambda w: precision_at(label, probability, w, RECALL_GRID)),
        "net_benefit": (
            decision_grid,
            lambda w: net_benefit(label, probability, decision_grid, w),
        ),
    }
    drawn: dict[str, list[np.ndarray]] = {name: [] for name in curves}
    for weights in bootstrap_weights(len(label), n_resamples, seed, groups):
        for name, (_, compute) in curves.items():
            drawn[name].append(compute(weights))
    out = {}
    for name, (grid, compute) in curves.items():
        value = compute(None)
        low = high = np.full(len(grid), np.nan)
        if drawn[name]:
            values = np.concatenate(drawn[name])
            values = values[np.isfinite(values).all(axis=1)]
            if len(values):
                low, high = np.percentile(values, [2.5, 97.5], axis=0)
        out[name] = {"grid": grid, "value": value, "low": low, "high": high}
    return CurveBands(
        **out, n_resamples=int(n_resamples), unit="sample" if groups is None else "patient"
    )


#: Threshold probabilities the report's decision-curve table shows (with the operating one).
DECISION_TABLE_THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.5)


def decision_summary(
    label: np.ndarray, bands: CurveBands, operating_threshold: float | None = None
) -> dict[str, Any]:
    """The decision curve of ``bands`` for a report: the whole curve (``threshold``,
    ``net_benefit``, ``low``, ``high``, ``treat_all``) and ``rows`` at
    :data:`DECISION_TABLE_THRESHOLDS` and the operating threshold (when on the curve's grid)."""
    curve = bands.net_benefit
    grid = np.asarray(curve["grid"], dtype=float)
    treat_all = treat_all_net_benefit(label, grid)
    wanted = set(DECISION_TABLE_THRESHOLDS)
    if operating_threshold is not None:
        wanted.add(float(operating_threshold))
    rows = []
    for threshold in sorted(wanted):
        hits = np.flatnonzero(np.isclose(grid, threshold, rtol=0, atol=1e-12))
        if not len(hits):
            continue
        i = int(hits[0])
        rows.append(
            {
                "threshold": float(threshold),
                "operating": operating_threshold is not None
                and bool(np.isclose(threshold, operating_threshold, rtol=0, atol=1e-12)),
                "net_benefit": float(curve["value"][i]),
                "ci95": [float(curve["low"][i]), float(curve["high"][i])],
                "treat_all": float(treat_all[i]),
            }
        )
    return {
        "reference": "Vickers & Elkin, Med Decis Making 2006;26:565-574",
        "formula": "TP/n - FP/n * pt/(1 - pt), treated when p >= pt",
        "rows": rows,
        "curve": {
            "threshold": grid,
            "net_benefit": curve["value"],
            "low": curve["low"],
            "high": curve["high"],
            "treat_all": treat_all,
        },
    }
