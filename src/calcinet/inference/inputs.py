"""Turn the command line's INPUTs into findings to predict (one prediction row each).

An INPUT is a volume file (NIfTI, NRRD, NumPy), a DICOM series folder, a DICOMDIR or an Enhanced
CT file, a folder of such inputs, or a manifest CSV read by :mod:`calcinet.imaging.rows` exactly
as training reads it (``path``, optional ``center_x, center_y, center_z, coord_space``, ``mask``,
``spacing_x, spacing_y, spacing_z``). A problem with one INPUT or one manifest row becomes a
:class:`Failure` and never stops the others.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from calcinet.imaging.geometry import VOLUME_SUFFIXES, check_space, has_suffix, is_dicom_file
from calcinet.imaging.rows import (
    CENTER,
    LABELS,
    FindingNames,
    Location,
    parse_location,
    read_csv,
)


@dataclass(frozen=True)
class Failure:
    """An input that produced no prediction, and why (a one-line reason naming it)."""

    path: str
    reason: str


def parse_center(text: str, what: str = "--center") -> tuple[float, float, float]:
    """``"x,y,z"`` -> three finite floats, or a ValueError naming ``what`` and the value."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{what}={text!r}: expected three numbers x,y,z")
    return values  # type: ignore[return-value]


def is_series(folder: Path) -> bool:
    """A folder holding DICOM files (a series, or the root of a DICOMDIR tree)."""
    return folder.is_dir() and any(
        p.is_file() and (p.name.upper() == "DICOMDIR" or has_suffix(p, (".dcm",))
                         or is_dicom_file(p)) for p in folder.iterdir())


def folder_entries(folder: Path) -> list[Path]:
    """Every input in a folder: the folder itself when it holds DICOM files (one series), its
    volume files, and the same in each sub-folder; a DICOMDIR's folder is one input."""
    if (folder / "DICOMDIR").is_file():
        return [folder]
    entries: list[Path] = [folder] if is_series(folder) else []
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and has_suffix(entry, VOLUME_SUFFIXES):
            entries.append(entry)
        elif entry.is_dir():
            entries += folder_entries(entry)
    return entries


def read_manifest(manifest: Path, default_space: str | None
                  ) -> tuple[list[Location], list[Failure]]:
    """Rows of a manifest CSV as findings; a bad row is a failure naming the line and column.

    As in training, centre columns need a ``coord_space`` column, unless ``default_space``
    (``--coord-space``) says what the centres of every row without one are.
    """
    try:
        header, rows = read_csv(manifest)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        return [], [Failure(str(manifest), f"cannot be read as a CSV manifest ({error})")]
    if "path" not in header:
        hint = " (the file looks separated by ';': save it comma-separated)" \
            if any(";" in h for h in header) else ""
        return [], [Failure(str(manifest), f"manifest columns {header}; expected a 'path' "
                            "column (and optional center_x,center_y,center_z,coord_space or mask)"
                            + hint)]
    if any(c in header for c in CENTER) and "coord_space" not in header and default_space is None:
        return [], [Failure(str(manifest), "the center_x/y/z columns need a coord_space column "
                            "(world, lps or voxel), as in training, or --coord-space for every "
                            "row")]
    found: list[Location] = []
    failures: list[Failure] = []
    names = FindingNames()  # as the manifest check keeps them
    for line, values in rows:
        where = f"{manifest}:{line}"
        if len(values) != len(header):
            failures.append(Failure(where, f"{len(values)} values for {len(header)} columns; "
                                    "expected one value per column"))
            continue
        row = {h: v.strip() for h, v in zip(header, values, strict=True)}
        location, problems = parse_location(row, manifest.parent, default_space)
        truth = row.get("label", "")
        if truth and truth.lower() not in LABELS:
            problems.append(("label", f"{truth!r}: unknown label; expected benign, malignant, 0 "
                                      "or 1 (or empty)"))
            location = None
        clash = None if location is None else names.clash(
            location.id, line, given=bool(row.get("id")))  # type: ignore[arg-type]
        if clash:
            problems.append(("id", f"{clash}, as calcinet-evaluate requires"))
            location = None
        if location is None:
            failures += [Failure(where, f"column {column!r}: {message}")
                         for column, message in problems]
        else:
            found.append(replace(location, source=where,
                                 label=LABELS[truth.lower()] if truth else None))
    return found, failures


def expand_inputs(
    inputs: Sequence[str | Path],
    center: tuple[float, float, float] | None = None,
    coord_space: str | None = None,
    mask: str | Path | None = None,
) -> tuple[list[Location], list[Failure]]:
    """Every INPUT as findings (folders expanded, manifests read), plus the inputs that failed.

    ``center`` / ``coord_space`` (default ``world``) / ``mask`` apply to every volume given
    directly; manifest rows bring their own (``coord_space`` is the default of a row without
    one).
    """
    given = None if coord_space is None else check_space(coord_space, "--coord-space")
    space = given or "world"
    found: list[Location] = []
    failures: list[Failure] = []
    mask_path = Path(mask) if mask is not None else None
    for item in inputs:
        path = Path(item)
        if path.is_file() and path.suffix.lower() == ".csv":
            rows, failed = read_manifest(path, given)
            found += rows
            failures += failed
        elif path.is_dir():
            entries = folder_entries(path)
            if not entries:
                failures.append(Failure(str(path), "folder holds no .nii/.nii.gz/.nrrd/.nhdr/.npy "
                                        "file and no DICOM series"))
            found += [Location(entry, center, space, mask_path) for entry in entries]
        else:  # a volume or a DICOM input; a missing or unknown file fails when it is read
            found.append(Location(path, center, space, mask_path))
    return found, failures
