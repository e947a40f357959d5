"""Batch patch requests through an exported model and write the rows (CSV or a table)."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch

from calcinet.inference.inputs import Failure, PatchRequest
from calcinet.inference.model import ExportedModel
from calcinet.inference.patches import PatchError, cut_patch
from calcinet.inference.readers import ReadError, Volume, read_volume

THRESHOLDS = ("operating", "sensitivity")


@dataclass(frozen=True)
class Prediction:
    """One output row: the malignancy probability of a patch and the decision at the threshold."""

    request: PatchRequest
    probability: float
    prediction: int
    label: str


def resolve_threshold(model: ExportedModel, choice: str | float = "operating") -> float:
    """``operating`` (chosen on validation), ``sensitivity`` (the target-sensitivity one), or a
    number in [0, 1]."""
    if choice == "operating":
        return model.info.threshold
    if choice == "sensitivity":
        return model.info.threshold_at_sensitivity
    try:
        value = float(choice)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise ValueError(
            f"--threshold={choice!r}: expected operating, sensitivity or a number in [0, 1]"
        )
    return value


def _load_patches(
    requests: Iterable[PatchRequest], model: ExportedModel, npy_spacing: Sequence[float]
) -> Iterator[tuple[PatchRequest, torch.Tensor] | Failure]:
    """Each request's HU patch, or its failure; consecutive rows of one scan read it once."""
    info = model.info
    cached: tuple[Path, Volume | ReadError] | None = None
    for request in requests:
        try:
            if cached is None or cached[0] != request.path:
                try:
                    cached = (request.path, read_volume(request.path, tuple(npy_spacing)))
                except ReadError as error:
                    cached = (request.path, error)
            volume = cached[1]
            if isinstance(volume, ReadError):
                raise volume
            patch = cut_patch(
                volume,
                info.patch_size,
                info.spacing,
                request.center,
                request.coord_space,
                info.pad_value_hu,
            )
        except (ReadError, PatchError) as error:
            reason = str(error)
            prefix = f"{request.path}: "
            yield Failure(
                str(request.path), reason[len(prefix) :] if reason.startswith(prefix) else reason
            )
            continue
        yield request, patch


def predict(
    model: ExportedModel,
    requests: Iterable[PatchRequest],
    batch_size: int = 16,
    threshold: float | None = None,
    npy_spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> Iterator[Prediction | Failure]:
    """Predictions (in request order) and failures (as soon as they happen)."""
    if batch_size < 1:
        raise ValueError(f"--batch-size={batch_size}: expected a positive integer")
    threshold = model.info.threshold if threshold is None else threshold
    names = model.info.class_names
    pending: list[tuple[PatchRequest, torch.Tensor]] = []

    def flush() -> Iterator[Prediction]:
        probabilities = model(torch.stack([patch for _, patch in pending])).tolist()
        for (request, _), probability in zip(pending, probabilities, strict=True):
            decision = int(probability >= threshold)
            yield Prediction(request, float(probability), decision, names[decision])
        pending.clear()

    for item in _load_patches(requests, model, npy_spacing):
        if isinstance(item, Failure):
            yield item
            continue
        pending.append(item)
        if len(pending) >= batch_size:
            yield from flush()
    if pending:
        yield from flush()


def _columns(rows: Sequence[Prediction]) -> list[str]:
    with_center = any(r.request.center is not None for r in rows)
    centre = ["center_x", "center_y", "center_z", "coord_space"] if with_center else []
    return ["path", *centre, "probability", "prediction", "label"]


def _cells(row: Prediction, columns: Sequence[str]) -> dict[str, str]:
    center = row.request.center
    cells = {
        "path": str(row.request.path),
        "probability": f"{row.probability:.6f}",
        "prediction": str(row.prediction),
        "label": row.label,
        "coord_space": row.request.coord_space if center is not None else "",
    }
    for axis, name in enumerate(("center_x", "center_y", "center_z")):
        cells[name] = "" if center is None else f"{center[axis]:g}"
    return {c: cells[c] for c in columns}


def write_csv(rows: Sequence[Prediction], path: Path) -> None:
    """``path,[center_x,center_y,center_z,coord_space,]probability,prediction,label``."""
    columns = _columns(rows)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(_cells(row, columns) for row in rows)


def print_table(rows: Sequence[Prediction], out: TextIO = sys.stdout) -> None:
    """The same columns as the CSV, aligned for reading."""
    columns = _columns(rows)
    table = [columns, *([_cells(r, columns)[c] for c in columns] for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip(),
            file=out,
        )
