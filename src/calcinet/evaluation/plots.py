"""Figures of an evaluation, drawn from plain arrays (matplotlib's Agg canvas, no pyplot state).

Each function writes one PNG and returns its path. Operating points are drawn where the model's
stored thresholds put them, so a reader sees what the deployed decision rule does on this set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from calcinet.evaluation.metrics import CurveBands, net_benefit, treat_all_net_benefit
from calcinet.views import VIEWS, display_slice, mark_orientation, pixel_aspect

DPI = 120
_POINT_STYLES = ("o", "s", "^", "D")


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _rates(label: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, float]:
    predicted = probability >= threshold
    positives, negatives = label == 1, label == 0
    tp = np.sum(predicted & positives)
    fp = np.sum(predicted & negatives)
    return {
        "tpr": tp / max(1, positives.sum()),
        "fpr": fp / max(1, negatives.sum()),
        "precision": tp / (tp + fp) if tp + fp else np.nan,
    }


def _counts(label: np.ndarray) -> str:
    return f"n = {int(np.sum(label == 1))} malignant / {int(np.sum(label == 0))} benign"


def _band_label(bands: Any) -> str:
    return f"95 % band ({bands.n_resamples} bootstrap resamples of {bands.unit}s)"


def _mark_points(ax: Any, label: np.ndarray, probability: np.ndarray,
                 points: Mapping[str, float], x: str, y: str,
                 describe: Callable[[dict[str, float]], str]) -> None:
    """Mark each named threshold of ``points`` at its (``x``, ``y``) rates (keys of
    :func:`_rates`), the first one larger; the legend names it with ``describe(rates)``."""
    for index, (style, (name, threshold)) in enumerate(
        zip(_POINT_STYLES, points.items(), strict=False)
    ):
        r = _rates(label, probability, threshold)
        ax.plot(r[x], r[y], style, ms=9 if index == 0 else 7, color=f"C{index + 1}",
                markeredgecolor="black", label=f"{name} (t={threshold:.3f}): {describe(r)}")


def roc_figure(
    label: np.ndarray,
    probability: np.ndarray,
    points: Mapping[str, float],
    path: Path,
    auroc: float | None = None,
    title: str = "ROC curve",
    bands: CurveBands | None = None,
    auroc_ci: Sequence[float] | None = None,
) -> Path:
    """ROC curve with each named threshold of ``points`` marked, the numbers of malignant and
    benign findings in the title and, with ``bands``, the bootstrap band of the sensitivity at
    each false-positive rate."""
    fpr, tpr, _ = roc_curve(label, probability)
    figure = Figure(figsize=(5, 5))
    ax = figure.add_subplot()
    shown = f" (AUROC {auroc:.3f}{_ci(auroc_ci)})" if auroc is not None else ""
    if bands is not None and np.all(np.isfinite(bands.roc["low"])):
        ax.fill_between(
            bands.roc["grid"], bands.roc["low"], bands.roc["high"], color="C0", alpha=0.2,
            lw=0, label=_band_label(bands),
        )
    ax.plot(fpr, tpr, lw=2, color="C0", label=f"model{shown}")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    _mark_points(ax, label, probability, points, "fpr", "tpr",
                 lambda r: f"sens {r['tpr']:.2f}, spec {1 - r['fpr']:.2f}")
    ax.set(
        xlabel="1 - specificity (false-positive rate)",
        ylabel="sensitivity (true-positive rate)",
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
        title=f"{title}\n{_counts(label)}",
    )
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3)
    return _save(figure, path)


def pr_figure(
    label: np.ndarray,
    probability: np.ndarray,
    points: Mapping[str, float],
    path: Path,
    ap: float | None = None,
    title: str = "Precision-recall curve",
    bands: CurveBands | None = None,
    ap_ci: Sequence[float] | None = None,
) -> Path:
    """Precision-recall curve with each named threshold marked, the class prior as baseline, the
    numbers of malignant and benign findings in the title and, with ``bands``, the bootstrap band
    of the precision at each recall."""
    precision, recall, _ = precision_recall_curve(label, probability)
    prior = float(np.mean(label))
    figure = Figure(figsize=(5, 5))
    ax = figure.add_subplot()
    shown = f" (AP {ap:.3f}{_ci(ap_ci)})" if ap is not None else ""
    if bands is not None and np.all(np.isfinite(bands.pr["low"])):
        ax.fill_between(
            bands.pr["grid"], bands.pr["low"], bands.pr["high"], step="pre", color="C0",
            alpha=0.2, lw=0, label=_band_label(bands),
        )
    ax.step(recall, precision, where="post", lw=2, color="C0", label=f"model{shown}")
    ax.axhline(prior, ls="--", color="grey", lw=1, label=f"prevalence {prior:.2f}")
    _mark_points(ax, label, probability, points, "tpr", "precision",
                 lambda r: f"PPV {r['precision']:.2f}, sens {r['tpr']:.2f}")
    ax.set(
        xlabel="recall (sensitivity)",
        ylabel="precision (PPV)",
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
        title=f"{title}\n{_counts(label)}",
    )
    ax.legend(loc="lower left", fontsize=7)
    ax.grid(alpha=0.3)
    return _save(figure, path)


def decision_curve_figure(
    label: np.ndarray,
    probability: np.ndarray,
    bands: CurveBands,
    path: Path,
    operating_threshold: float | None = None,
    title: str = "Decision curve",
) -> Path:
    """Net benefit against threshold probability (Vickers & Elkin 2006) of the model, with its
    bootstrap band, beside "treat all" and "treat none"; the operating threshold marked."""
    curve = bands.net_benefit
    grid = curve["grid"]
    treat_all = treat_all_net_benefit(label, grid)
    prevalence = float(np.mean(label))
    figure = Figure(figsize=(6, 4.5))
    ax = figure.add_subplot()
    if np.all(np.isfinite(curve["low"])):
        ax.fill_between(grid, curve["low"], curve["high"], color="C0", alpha=0.2, lw=0,
                        label=_band_label(bands))
    ax.plot(grid, curve["value"], lw=2, color="C0", label="model")
    ax.plot(grid, treat_all, color="C3", lw=1.2, label="treat all")
    ax.axhline(0.0, color="black", lw=1.2, ls="--", label="treat none")
    if operating_threshold is not None and 0 < operating_threshold < 1:
        value = float(net_benefit(label, probability, [operating_threshold])[0])
        ax.plot(operating_threshold, value, "o", ms=9, color="C1", markeredgecolor="black",
                label=f"operating threshold {operating_threshold:.3f}: net benefit {value:.3f}")
    ax.set(
        xlabel="threshold probability (treat when p >= threshold)",
        ylabel="net benefit (true positives per finding)",
        xlim=(0, 1),
        ylim=(-0.05, max(0.05, prevalence) * 1.1),
        title=f"{title}\n{_counts(label)}, prevalence {prevalence:.2f}",
    )
    ax.legend(loc="upper right", fontsize=7)
    ax.grid(alpha=0.3)
    return _save(figure, path)


def _ci(interval: Sequence[float] | None) -> str:
    if interval is None or not all(v is not None and np.isfinite(v) for v in interval):
        return ""
    return f", 95 % CI {interval[0]:.3f}-{interval[1]:.3f}"


def reliability_figure(
    bins: Sequence[Mapping[str, float]],
    path: Path,
    ece: float | None = None,
    title: str = "Calibration (reliability diagram)",
) -> Path:
    """Fraction malignant against mean probability per bin, with the bin counts below."""
    figure = Figure(figsize=(5, 6))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    lower = np.array([b["lower"] for b in bins])
    width = np.array([b["upper"] - b["lower"] for b in bins])
    counts = np.array([b["count"] for b in bins])
    observed = np.array([b["fraction_malignant"] for b in bins])
    mean_p = np.array([b["mean_probability"] for b in bins])
    filled = counts > 0
    top.bar(
        lower[filled],
        observed[filled],
        width=width[filled],
        align="edge",
        alpha=0.35,
        edgecolor="black",
        label="fraction malignant",
    )
    top.plot(mean_p[filled], observed[filled], "o-", color="C1", label="per bin")
    top.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    shown = f" (ECE {ece:.3f})" if ece is not None else ""
    top.set(ylabel="observed fraction malignant", ylim=(0, 1), title=title + shown)
    top.legend(loc="upper left", fontsize=7)
    top.grid(alpha=0.3)
    bottom.bar(lower, counts, width=width, align="edge", edgecolor="black", color="C0")
    bottom.set(xlabel="predicted probability of malignancy", ylabel="samples", xlim=(0, 1))
    return _save(figure, path)


def confusion_figure(
    counts: Mapping[str, int],
    class_names: Sequence[str],
    threshold: float,
    path: Path,
    title: str = "Confusion matrix",
) -> Path:
    """2 x 2 confusion matrix (rows: truth, columns: prediction) with counts and row shares."""
    matrix = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]])
    shares = matrix / np.maximum(1, matrix.sum(axis=1, keepdims=True))
    figure = Figure(figsize=(4.5, 4))
    ax = figure.add_subplot()
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            ax.text(
                j,
                i,
                f"{matrix[i, j]}\n{shares[i, j]:.0%}",
                ha="center",
                va="center",
                color="white" if shares[i, j] > 0.5 else "black",
                fontsize=12,
            )
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=list(class_names),
        yticklabels=list(class_names),
        xlabel="prediction",
        ylabel="truth",
        title=f"{title} (t={threshold:.3f})",
    )
    return _save(figure, path)


def histogram_figure(
    label: np.ndarray,
    probability: np.ndarray,
    class_names: Sequence[str],
    thresholds: Mapping[str, float],
    path: Path,
    title: str = "Predicted probability by class",
) -> Path:
    """Histogram of the probability per true class with the thresholds as vertical lines."""
    figure = Figure(figsize=(6, 4))
    ax = figure.add_subplot()
    edges = np.linspace(0, 1, 26)
    for value, name in enumerate(class_names):
        ax.hist(
            probability[label == value],
            bins=edges,
            alpha=0.55,
            label=f"{name} (n={int(np.sum(label == value))})",
        )
    for style, (name, threshold) in zip(("-", "--", ":", "-."), thresholds.items(), strict=False):
        ax.axvline(threshold, color="black", ls=style, lw=1, label=f"{name} t={threshold:.3f}")
    ax.set(xlabel="predicted probability of malignancy", ylabel="samples", xlim=(0, 1), title=title)
    ax.legend(fontsize=7)
    return _save(figure, path)


def breakdown_figure(table: pd.DataFrame, column: str, path: Path) -> Path:
    """Accuracy per group (horizontal bars, worst at the top) with the group sizes."""
    figure = Figure(figsize=(6.5, 0.35 * len(table) + 1.5))
    ax = figure.add_subplot()
    ordered = table.iloc[::-1]
    positions = np.arange(len(ordered))
    colours = [
        "C3" if m and b == 0 else "C0" if b and m == 0 else "C2"
        for m, b in zip(ordered["n_malignant"], ordered["n_benign"], strict=True)
    ]
    ax.barh(positions, ordered["accuracy"], color=colours)
    ax.set_yticks(
        positions,
        [f"{g} (n={n})" for g, n in zip(ordered["group"], ordered["n"], strict=True)],
        fontsize=7,
    )
    ax.set(
        xlim=(0, 1),
        xlabel="accuracy at the operating threshold",
        title=f"Accuracy by {column} (red: malignant, blue: benign, green: mixed)",
    )
    ax.grid(axis="x", alpha=0.3)
    return _save(figure, path)


#: Colormap of the Grad-CAM overlays: perceptually uniform and readable in grey print.
CAM_COLORMAP = "magma"
#: Opacity of the Grad-CAM overlay on the grey patch.
CAM_ALPHA = 0.55


def finding_figure(
    items: Sequence[Mapping[str, Any]],
    path: Path,
    title: str,
    hu_window: Sequence[float],
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> Path:
    """Write :func:`draw_findings` to ``path`` (PNG); returns the path."""
    return _save(draw_findings(items, title, hu_window, spacing), path)


def draw_findings(
    items: Sequence[Mapping[str, Any]],
    title: str,
    hu_window: Sequence[float],
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> Figure:
    """One block per finding: axial, coronal and sagittal slices through the patch centre (the
    finding), the plain patch in grey with its HU colour bar and, below it, the Grad-CAM map
    over the patch with its own colour bar (0 to 1, 1 most important); orientation letters on
    every slice (radiological convention, see :mod:`calcinet.views`).

    Each item has ``image`` (``[X, Y, Z]`` RAS, windowed to [0, 1] by ``hu_window`` (low, high
    HU)), ``title`` (truth, probability, pattern ...) and optionally ``cam`` (same shape, [0, 1]).
    ``spacing`` (x, y, z mm) keeps millimetres square on screen.
    """
    low, high = (float(v) for v in hu_window)
    with_cam = any(item.get("cam") is not None for item in items)
    rows = 2 if with_cam else 1
    count = max(1, len(items))
    figure = Figure(figsize=(7.6, count * (2.05 * rows + 0.75) + 0.35), layout="constrained")
    blocks = np.atleast_1d(figure.subfigures(count, 1))
    for block, item in zip(blocks, items, strict=False):
        axes = np.atleast_2d(block.subplots(rows, 3))
        hu = low + np.asarray(item["image"], dtype=float) * (high - low)
        cam = item.get("cam")
        for column, view in enumerate(VIEWS):
            plain, letters = display_slice(hu, view)
            aspect = pixel_aspect(spacing, view)
            grey = axes[0, column].imshow(
                plain, cmap="gray", vmin=low, vmax=high, aspect=aspect, interpolation="nearest"
            )
            axes[0, column].set_title(view, fontsize=8)
            if rows == 2:
                ax = axes[1, column]
                ax.imshow(plain, cmap="gray", vmin=low, vmax=high, aspect=aspect,
                          interpolation="nearest")
                if cam is not None:
                    ax.imshow(
                        display_slice(np.asarray(cam), view)[0], cmap=CAM_COLORMAP, vmin=0,
                        vmax=1, alpha=CAM_ALPHA, aspect=aspect, interpolation="bilinear",
                    )
                else:
                    ax.text(0.5, 0.5, "no map", transform=ax.transAxes, ha="center")
            for ax in axes[:, column]:
                ax.set_xticks([])
                ax.set_yticks([])
                mark_orientation(ax, letters)
        block.colorbar(grey, ax=list(axes[0]), shrink=0.9, label="HU", pad=0.02)
        axes[0, 0].set_ylabel("patch", fontsize=8)
        if rows == 2:
            axes[1, 0].set_ylabel("Grad-CAM", fontsize=8)
            mappable = ScalarMappable(Normalize(0, 1), cmap=CAM_COLORMAP)
            block.colorbar(mappable, ax=list(axes[1]), shrink=0.9, pad=0.02,
                           label="Grad-CAM (1: most important)")
        block.suptitle(item["title"], fontsize=8)
    for block in blocks[len(items):]:
        block.text(0.5, 0.5, "nothing to show", ha="center")
    figure.suptitle(title, fontsize=10)
    return figure
