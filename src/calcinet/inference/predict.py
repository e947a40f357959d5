"""Batch findings through an exported model and write the rows (CSV or a table).

Each finding's patch is cut by :func:`calcinet.imaging.cut_patch` from the volume
:func:`calcinet.imaging.read_volume` reads, the very functions training and evaluation use.
Every row carries a ``warning``: what the reader assumed (an NRRD without ``space``), values that
do not look like CT in HU, and an input far from the intensity profile of the model's training
patches. A row with a warning is still written.
"""

from __future__ import annotations

import csv
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import numpy as np
import torch

from calcinet.imaging import (
    Volume,
    cut_patch,
    hu_quantiles,
    intensity_problems,
    intensity_warnings,
    mask_findings,
    non_finite_problem,
    profile_warnings,
    read_volume,
)
from calcinet.imaging.rows import Location
from calcinet.inference.inputs import Failure
from calcinet.inference.metadata import ModelInfo
from calcinet.inference.model import ExportedModel

THRESHOLDS = ("operating", "sensitivity")


@dataclass(frozen=True)
class Prediction:
    """One output row: the malignancy probability of a finding's patch and the decision
    (``prediction`` 0/1 and its class name ``predicted_label``); the truth, where the input has
    one, is ``request.label``."""

    request: Location
    probability: float
    prediction: int
    predicted_label: str
    warnings: tuple[str, ...] = ()


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


@dataclass
class _Scan:
    """A volume read once for all its findings, with its finite value range."""

    volume: Volume
    low: float
    high: float

    @classmethod
    def read(cls, location: Location, npy_spacing: Sequence[float]) -> _Scan:
        volume = read_volume(location.path, tuple(location.npy_spacing or npy_spacing))
        array = volume.array
        if not np.isfinite(array).all():
            array = array[np.isfinite(array)]
        if array.size == 0:
            return cls(volume, np.nan, np.nan)
        return cls(volume, float(array.min()), float(array.max()))


def _reason(error: Exception, path: Path) -> str:
    """The message without its leading ``"<path>: "`` (the row names the path already)."""
    text = str(error) or type(error).__name__
    prefix = f"{path}: "
    if text.startswith(prefix):
        return text[len(prefix):]
    if isinstance(error, ValueError):  # ReadError, PatchError, MaskError name what they need
        return text
    return f"unexpected {type(error).__name__}: {text}"


def _failure(location: Location, error: Exception) -> Failure:
    """The failure of one input: named by its manifest line when it has one, else its path."""
    reason = _reason(error, location.path)
    if location.source:
        return Failure(location.source, f"{location.path}: {reason}")
    return Failure(str(location.path), reason)


def _findings(location: Location, scan: _Scan) -> list[Location]:
    """The location itself, or one located finding per connected component of its mask."""
    if location.mask is None:
        return [location]
    try:
        mask = read_volume(location.mask)
        found = mask_findings(mask, (scan.volume.shape, scan.volume.affine))
    except ValueError as error:
        raise ValueError(f"mask {location.mask}: {str(error).removeprefix(f'{location.mask}: ')}"
                         ) from None
    return [replace(location, center=f.center_world, coord_space="world", component=f.component,
                    id=f"{location.id}#{f.component}" if location.id else None) for f in found]


Item = tuple[Location, torch.Tensor, tuple[str, ...]] | Failure


def _scan_items(locations: Sequence[Location], info: ModelInfo, npy_spacing: Sequence[float]
                ) -> list[list[Item]]:
    """Read one scan once and cut the patches of all its requests: one list of items (findings
    with their patch and warnings, or failures) per request. Any error stays with its request."""
    try:
        scan: _Scan | Exception = _Scan.read(locations[0], npy_spacing)
    except Exception as error:  # noqa: BLE001 - reported on each of the scan's own lines
        scan = error
    out: list[list[Item]] = []
    for request in locations:
        items: list[Item] = []
        out.append(items)
        try:
            if isinstance(scan, Exception):
                raise scan
            found = _findings(request, scan)
        except Exception as error:  # noqa: BLE001
            items.append(_failure(request, error))
            continue
        whole_scan = request.center is not None or request.mask is not None
        scan_warnings = [*scan.volume.warnings,
                         *intensity_problems(scan.low, scan.high, whole_scan)]
        for finding in found:
            try:
                patch = cut_patch(scan.volume, info.patch_size, info.spacing, finding.center,
                                  finding.coord_space, info.pad_value_hu)
            except Exception as error:  # noqa: BLE001
                items.append(_failure(finding, error))
                continue
            # NumPy: 0.02 ms for a 48^3 patch, where torch's isfinite in a reading thread
            # waits on the model's intra-op threads (0.2-0.5 ms).
            values = patch.values.numpy()
            nonfinite = values.size - np.count_nonzero(np.isfinite(values))
            if nonfinite:  # refused, as training's manifest check refuses such files
                items.append(_failure(finding, ValueError(
                    f"the patch holds {non_finite_problem(nonfinite)}")))
                continue
            quantiles = hu_quantiles(patch.values)  # of what the model sees
            warnings = [*scan_warnings, *intensity_warnings(scan.low, quantiles, whole_scan),
                        *profile_warnings(quantiles, info.intensity_profile)]
            items.append((finding, patch.values, tuple(warnings)))
    return out


def load_patches(
    requests: Iterable[Location], model: ExportedModel, npy_spacing: Sequence[float],
    workers: int = 2, ahead: int = 0,
) -> Iterator[Item]:
    """Each finding with its ``[1, X, Y, Z]`` HU patch and warnings, or its failure, in request
    order. Every scan is read once for all the requests that name it, wherever they are in the
    list, and ``workers`` threads read and cut the next scans while the caller runs the model
    (0: read in the calling thread). At most ``2 * workers + ahead`` scans are in flight: a
    caller that batches passes its batch size as ``ahead``, so that the threads read the whole
    next batch while the model runs on this one. Only ``workers`` scans are held in memory at
    once (those being read); a finished one keeps only its patches. Any error stays with its
    input: the others still run. When the caller stops early, the scans not yet started are
    dropped (those being read are finished).

    Threads, not processes: reading (zlib, pydicom's decoders) and cutting (NumPy) release the
    GIL for their heavy loops, and the patches need no copy between processes.
    """
    if workers < 0:
        raise ValueError(f"--num-workers={workers}: expected an integer >= 0")
    if ahead < 0:
        raise ValueError(f"ahead={ahead}: expected an integer >= 0")
    requests = list(requests)
    groups: dict[tuple, list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault((request.path, request.npy_spacing or tuple(npy_spacing)),
                          []).append(index)
    jobs = list(groups.values())
    ready: dict[int, list[Item]] = {}
    next_index = 0

    def drain() -> Iterator[Item]:
        nonlocal next_index
        while next_index in ready:
            yield from ready.pop(next_index)
            next_index += 1

    def run(job: list[int]) -> list[list[Item]]:
        return _scan_items([requests[i] for i in job], model.info, npy_spacing)

    if workers == 0:
        for job in jobs:
            ready.update(zip(job, run(job), strict=True))
            yield from drain()
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="calcinet-read")
    try:
        in_flight: deque[tuple[list[int], Future[list[list[Item]]]]] = deque()
        pending_jobs = iter(jobs)
        for job in pending_jobs:
            in_flight.append((job, pool.submit(run, job)))
            if len(in_flight) >= 2 * workers + ahead:
                break
        while in_flight:
            job, future = in_flight.popleft()
            ready.update(zip(job, future.result(), strict=True))
            following = next(pending_jobs, None)
            if following is not None:
                in_flight.append((following, pool.submit(run, following)))
            yield from drain()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def predict(
    model: ExportedModel,
    requests: Iterable[Location],
    batch_size: int = 16,
    threshold: float | None = None,
    npy_spacing: Sequence[float] = (1.0, 1.0, 1.0),
    workers: int = 2,
) -> Iterator[Prediction | Failure]:
    """Predictions (in request order) and failures (as soon as they happen); ``workers``
    threads read ahead, up to the next batch (see :func:`load_patches`)."""
    if batch_size < 1:
        raise ValueError(f"--batch-size={batch_size}: expected a positive integer")
    threshold = model.info.threshold if threshold is None else threshold
    names = model.info.class_names
    pending: list[tuple[Location, torch.Tensor, tuple[str, ...]]] = []

    def flush() -> Iterator[Prediction]:
        probabilities = model(torch.stack([patch for _, patch, _ in pending])).tolist()
        for (request, _, warnings), probability in zip(pending, probabilities, strict=True):
            decision = int(probability >= threshold)
            yield Prediction(request, float(probability), decision, names[decision], warnings)
        pending.clear()

    for item in load_patches(requests, model, npy_spacing, workers, ahead=batch_size):
        if isinstance(item, Failure):
            yield item
            continue
        pending.append(item)
        if len(pending) >= batch_size:
            yield from flush()
    if pending:
        yield from flush()


def csv_columns(requests: Iterable[Location]) -> list[str]:
    """The columns of the predictions of ``requests`` (known before any is predicted, so that
    rows can be written as they come): ``id`` when a request has one, ``component`` and the
    centre when a mask gives the findings, the centre when a request has one, ``label`` when a
    request has the truth."""
    requests = list(requests)
    with_id = any(r.id is not None for r in requests)
    with_component = any(r.mask is not None or r.component is not None for r in requests)
    with_center = with_component or any(r.center is not None for r in requests)
    with_label = any(r.label is not None for r in requests)
    centre = ["center_x", "center_y", "center_z", "coord_space"] if with_center else []
    return [*(["id"] if with_id else []), "path", *(["component"] if with_component else []),
            *centre, *(["label"] if with_label else []), "probability", "prediction",
            "predicted_label", "warning"]


def _cells(row: Prediction, columns: Sequence[str], exact: bool = True) -> dict[str, str]:
    """A row's text. ``exact``: the probability in full (Python's shortest repr, as pandas
    writes evaluate's predictions.csv), so that comparing it with the threshold the command
    prints gives the row's decision even next to the threshold; else 6 decimals (the table)."""
    center = row.request.center
    cells = {
        "id": row.request.id or "",
        "path": str(row.request.path),
        "component": "" if row.request.component is None else str(row.request.component),
        "probability": repr(float(row.probability)) if exact else f"{row.probability:.6f}",
        "prediction": str(row.prediction),
        "predicted_label": row.predicted_label,
        "label": "" if row.request.label is None else str(row.request.label),
        "coord_space": row.request.coord_space if center is not None else "",
        "warning": "; ".join(row.warnings),
    }
    for axis, name in enumerate(("center_x", "center_y", "center_z")):
        cells[name] = "" if center is None else f"{center[axis]:.10g}"
    return {c: cells[c] for c in columns}


class CsvRows:
    """Predictions written as they come, one flushed line each, so that a stopped or killed run
    keeps every row it made: ``[id,]path,[component,][center_x,center_y,center_z,coord_space,]
    [label,]probability,prediction,predicted_label,warning`` (see :func:`csv_columns`; ``label``
    is the truth, 0/1 as in ``calcinet-evaluate``'s predictions.csv, ``prediction`` 0/1 and
    ``predicted_label`` its class name), into a file or an open text stream such as stdout.

    A file is checked for writing at once but created (or replaced) only with the first row:
    a run that predicts nothing leaves a file of an earlier run as it was (``written`` False).

    Raises:
        OSError: the file cannot be opened or written.
    """

    def __init__(self, target: Path | TextIO, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self._target = target
        self._handle: TextIO | None = None
        self._writer: csv.DictWriter | None = None
        if isinstance(target, Path):
            existed = target.exists()
            with target.open("a", encoding="utf-8"):  # the OSError of an unwritable target,
                pass  # without touching a file already there
            if not existed:
                target.unlink()
        else:
            self._start(target)

    @property
    def written(self) -> bool:
        """Whether the header (and so any row) has been written."""
        return self._writer is not None

    def _start(self, handle: TextIO) -> None:
        self._handle = handle
        self._writer = csv.DictWriter(handle, fieldnames=self.columns, lineterminator="\n")
        self._writer.writeheader()
        handle.flush()

    def write(self, row: Prediction) -> None:
        if self._writer is None:
            assert isinstance(self._target, Path)
            self._start(self._target.open("w", newline="", encoding="utf-8"))
        assert self._writer is not None and self._handle is not None
        self._writer.writerow(_cells(row, self.columns))
        self._handle.flush()

    def close(self) -> None:
        """Close the file (an open stream given, such as stdout, stays open)."""
        if isinstance(self._target, Path) and self._handle is not None:
            self._handle.close()


def print_table(rows: Sequence[Prediction], out: TextIO = sys.stdout) -> None:
    """The same columns as the CSV, aligned for reading."""
    columns = csv_columns(r.request for r in rows)
    table = [columns, *([_cells(r, columns, exact=False)[c] for c in columns] for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip(),
            file=out,
        )
