"""Checks on a dataset before training: every problem at once, each naming row, column and value.

A source collects :class:`Problem` objects while it reads its description (a manifest, an npz
file), then raises one :class:`DataValidationError` whose message is the whole report, so a user
fixes everything in one pass instead of one error per run. Reading images is the slow part: the
facts a check needs (shape, affine, value range, non-finite count) are cached per file, keyed on
its size and modification time (:class:`FactsCache`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from calcinet.files import atomic_write
from calcinet.imaging import (
    Volume,
    hu_quantiles,
    intensity_problems,
    intensity_warnings,
    non_finite_problem,
)


class DataValidationError(ValueError):
    """The data cannot be trained on; the message lists every problem found."""


@dataclass(frozen=True)
class Problem:
    """One problem: where (a 1-based CSV line; None: the whole dataset), column, value, what."""

    message: str
    line: int | None = None
    column: str | None = None
    value: str | None = None

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        if self.value is not None:
            where.append(f"value {self.value!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


def format_report(name: str, problems: Sequence[Problem], rows: int | None = None,
                  footer: str = "", kind: str = "problem") -> str:
    """``"<name>: N problems ..."`` (or another ``kind``, such as ``warning``) then one indented
    line per problem (rows first, in order)."""
    lines_with = {p.line for p in problems if p.line is not None and p.line > 1}
    summary = f"{name}: {len(problems)} {kind}{'s' if len(problems) != 1 else ''}"
    if rows is not None and lines_with:
        summary += f" in {len(lines_with)} of {rows} rows"
    ordered = sorted(problems, key=lambda p: (p.line is None, p.line or 0))
    body = [f"  {p}" for p in ordered]
    return "\n".join([summary, *body, *([footer] if footer else [])])


@dataclass
class ImageFacts:
    """What the checks need to know about an image, as :func:`calcinet.imaging.read_volume`
    reads it for training and inference alike.

    ``shape`` is the volume's ``[X, Y, Z]`` in the file's voxel order; ``affine`` maps voxel
    indices to RAS mm; ``low``/``high`` are the finite minimum and maximum, ``quantiles`` the
    :func:`calcinet.imaging.hu_quantiles`; ``nonfinite`` counts NaN and inf voxels; ``warnings``
    are the reader's notes (an assumed NRRD space, for instance).
    """

    shape: list[int]
    affine: list[list[float]]
    low: float
    high: float
    quantiles: list[float]
    nonfinite: int
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, volume: Volume) -> ImageFacts:
        """The facts of a read volume. NumPy, single-threaded: the check reads several files in
        threads, and torch's intra-op threads on top of those stall each other on a busy machine
        (see :func:`calcinet.imaging.patches._linear_axis`)."""
        values = np.asarray(volume.array)
        finite = np.isfinite(values)
        nonfinite = int(values.size - np.count_nonzero(finite))
        kept = values[finite] if nonfinite else values
        low = float(kept.min()) if kept.size else float("nan")
        high = float(kept.max()) if kept.size else float("nan")
        return cls(list(volume.shape), np.asarray(volume.affine, float).tolist(), low, high,
                   hu_quantiles(kept).tolist(), nonfinite, list(volume.warnings))


def image_problems(facts: ImageFacts, whole_scan: bool = False) -> list[str]:
    """What is wrong with an image for training on CT patches in HU (empty when nothing is)."""
    found: list[str] = []
    if facts.nonfinite:
        found.append(non_finite_problem(facts.nonfinite))
    return found + intensity_problems(facts.low, facts.high, whole_scan)


def image_warnings(facts: ImageFacts, whole_scan: bool = False) -> list[str]:
    """What looks wrong without being certainly wrong: the reader's notes, then the values."""
    return [*facts.warnings, *intensity_warnings(facts.low, facts.quantiles, whole_scan)]


def file_stamp(path: Path) -> list[int]:
    """``[size, mtime_ns]`` of a file, or summed/latest over the files of a folder (DICOM)."""
    if path.is_dir():
        stats = [p.stat() for p in sorted(path.iterdir()) if p.is_file()]
        return [sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0),
                len(stats)]
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


class FactsCache:
    """Image facts stored in one JSON file, each valid while its file's size and mtime match.

    Makes a second check (or a second run) of a large manifest read headers only, not voxels.
    ``folder=None`` keeps nothing.
    """

    VERSION = 2

    def __init__(self, folder: str | os.PathLike | None) -> None:
        self.file = Path(folder) / "image_facts.json" if folder else None
        self.entries: dict[str, Any] = {}
        self.changed = False
        if self.file is not None and self.file.is_file():
            try:
                stored = json.loads(self.file.read_text())
                if stored.get("version") == self.VERSION:
                    self.entries = stored.get("entries", {})
            except (OSError, ValueError):
                self.entries = {}

    def get(self, key: str, stamp: list[int]) -> ImageFacts | None:
        entry = self.entries.get(key)
        if entry is None or entry.get("stamp") != stamp:
            return None
        return ImageFacts(**entry["facts"])

    def put(self, key: str, stamp: list[int], facts: ImageFacts) -> None:
        self.entries[key] = {"stamp": stamp, "facts": asdict(facts)}
        self.changed = True

    def save(self) -> None:
        """Write atomically (another run may read it at the same time); failures are harmless."""
        if self.file is None or not self.changed:
            return
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.file) as temporary, open(temporary, "w") as fh:
                json.dump({"version": self.VERSION, "entries": self.entries}, fh)
            self.changed = False
        except OSError:
            pass
