"""Figures of an evaluation, drawn from plain arrays (matplotlib's Agg canvas, no pyplot state).

Each function writes one PNG and returns its path. Operating points are drawn where the model's
stored thresholds put them, so a reader sees what the deployed decision rule does on this set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

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


def roc_figure(
    label: np.ndarray,
    probability: np.ndarray,
    points: Mapping[str, float],
    path: Path,
    auroc: float | None = None,
    title: str = "ROC curve",
) -> Path:
    """ROC curve with each named threshold of ``points`` marked."""
    fpr, tpr, _ = roc_curve(label, probability)
    figure = Figure(figsize=(5, 5))
    ax = figure.add_subplot()
    shown = f" (AUROC {auroc:.3f})" if auroc is not None else ""
    ax.plot(fpr, tpr, lw=2, label=f"model{shown}")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    for style, (name, threshold) in zip(_POINT_STYLES, points.items(), strict=False):
        r = _rates(label, probability, threshold)
        ax.plot(
            r["fpr"],
            r["tpr"],
            style,
            ms=8,
            label=f"{name} (t={threshold:.3f}): sens {r['tpr']:.2f}, spec {1 - r['fpr']:.2f}",
        )
    ax.set(
        xlabel="1 - specificity (false-positive rate)",
        ylabel="sensitivity (true-positive rate)",
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
        title=title,
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
) -> Path:
    """Precision-recall curve with each named threshold marked and the class prior as baseline."""
    precision, recall, _ = precision_recall_curve(label, probability)
    prior = float(np.mean(label))
    figure = Figure(figsize=(5, 5))
    ax = figure.add_subplot()
    shown = f" (AP {ap:.3f})" if ap is not None else ""
    ax.step(recall, precision, where="post", lw=2, label=f"model{shown}")
    ax.axhline(prior, ls="--", color="grey", lw=1, label=f"prevalence {prior:.2f}")
    for style, (name, threshold) in zip(_POINT_STYLES, points.items(), strict=False):
        r = _rates(label, probability, threshold)
        ax.plot(r["tpr"], r["precision"], style, ms=8, label=f"{name} (t={threshold:.3f})")
    ax.set(
        xlabel="recall (sensitivity)",
        ylabel="precision (PPV)",
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
        title=title,
    )
    ax.legend(loc="lower left", fontsize=7)
    ax.grid(alpha=0.3)
    return _save(figure, path)


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


def _centre_slice(volume: np.ndarray, view: str) -> np.ndarray:
    """The slice through the centre of an ``[X, Y, Z]`` (RAS) volume, transposed so that the
    second named axis runs upwards (y for axial, z for coronal and sagittal)."""
    cx, cy, cz = (s // 2 for s in volume.shape)
    cut = {"axial": volume[:, :, cz], "coronal": volume[:, cy, :], "sagittal": volume[cx, :, :]}
    return cut[view].T


def montage_figure(items: Sequence[Mapping[str, Any]], path: Path, title: str) -> Path:
    """One row per item, three columns (axial, coronal, sagittal through the centre).

    Each item has ``image`` (``[X, Y, Z]``, windowed to [0, 1]), ``title`` and optionally
    ``cam`` (same shape, [0, 1]) drawn as a translucent heat map over the image.
    """
    rows = max(1, len(items))
    figure = Figure(figsize=(7.5, 2.5 * rows + 0.6), layout="constrained")
    axes = np.atleast_2d(figure.subplots(rows, 3))
    for row, item in zip(axes, items, strict=False):
        image, cam = np.asarray(item["image"]), item.get("cam")
        for ax, view in zip(row, ("axial", "coronal", "sagittal"), strict=True):
            ax.imshow(_centre_slice(image, view), cmap="gray", vmin=0, vmax=1, origin="lower")
            if cam is not None:
                ax.imshow(
                    _centre_slice(np.asarray(cam), view),
                    cmap="jet",
                    alpha=0.4,
                    vmin=0,
                    vmax=1,
                    origin="lower",
                )
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(view, fontsize=8)
        row[0].set_ylabel(item["title"], fontsize=7)
    for ax in axes.flat[len(items) * 3 :]:
        ax.set_axis_off()
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)
