"""Turn the command line's INPUTs into a list of patch requests (one per prediction row).

An INPUT is a volume file (NIfTI, NRRD, NumPy), a DICOM series folder, a folder of such files or
series, or a manifest CSV: column ``path`` (relative to the CSV's folder, or absolute) and
optional ``center_x, center_y, center_z, coord_space`` columns. A problem with one INPUT or one
manifest row becomes a :class:`Failure` and never stops the others.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from calcinet.inference.patches import COORD_SPACES
from calcinet.inference.readers import VOLUME_SUFFIXES, has_suffix, is_dicom_folder

CENTER_COLUMNS = ("center_x", "center_y", "center_z")


@dataclass(frozen=True)
class PatchRequest:
    """One prediction to make: which volume, and where (``center`` None: the middle)."""

    path: Path
    center: tuple[float, float, float] | None = None
    coord_space: str = "world"


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


def _check_space(coord_space: str, what: str) -> str:
    space = coord_space.strip().lower()
    if space not in COORD_SPACES:
        raise ValueError(f"{what}={coord_space!r}: expected one of {', '.join(COORD_SPACES)}")
    return space


def _folder_entries(folder: Path) -> list[Path]:
    """Volumes in a folder that is not itself a DICOM series: files and series sub-folders."""
    entries: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and has_suffix(entry, VOLUME_SUFFIXES):
            entries.append(entry)
        elif entry.is_dir():
            if is_dicom_folder(entry):
                entries.append(entry)
            else:
                entries.extend(_folder_entries(entry))
    return entries


def read_manifest(manifest: Path, default_space: str) -> tuple[list[PatchRequest], list[Failure]]:
    """Rows of a manifest CSV as requests; a bad row is a failure naming the row and column."""
    try:
        with manifest.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
            columns = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        return [], [Failure(str(manifest), f"cannot be read as a CSV manifest ({error})")]
    if "path" not in columns:
        return [], [
            Failure(
                str(manifest),
                f"manifest columns {sorted(columns)}; expected a "
                "'path' column (and optional center_x,center_y,center_z,coord_space)",
            )
        ]
    requests: list[PatchRequest] = []
    failures: list[Failure] = []
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{manifest}:{number}"
        value = (row.get("path") or "").strip()
        if not value:
            failures.append(Failure(where, "empty 'path'"))
            continue
        path = Path(value) if Path(value).is_absolute() else manifest.parent / value
        cells = [(row.get(c) or "").strip() for c in CENTER_COLUMNS]
        try:
            space = _check_space(row.get("coord_space") or default_space, "coord_space")
            center = None
            if any(cells):
                center = parse_center(",".join(cells), "center_x,center_y,center_z")
        except ValueError as error:
            failures.append(Failure(where, str(error)))
            continue
        requests.append(PatchRequest(path, center, space))
    return requests, failures


def expand_inputs(
    inputs: Sequence[str | Path],
    center: tuple[float, float, float] | None = None,
    coord_space: str = "world",
) -> tuple[list[PatchRequest], list[Failure]]:
    """Every INPUT as requests (folders expanded, manifests read), plus the inputs that failed.

    ``center`` / ``coord_space`` apply to every volume given directly; manifest rows bring their
    own (``coord_space`` is the default of a row without one).
    """
    space = _check_space(coord_space, "--coord-space")
    requests: list[PatchRequest] = []
    failures: list[Failure] = []
    for item in inputs:
        path = Path(item)
        if path.is_file() and path.suffix.lower() == ".csv":
            found, failed = read_manifest(path, space)
            requests += found
            failures += failed
        elif path.is_dir() and not is_dicom_folder(path):
            entries = _folder_entries(path)
            if not entries:
                failures.append(
                    Failure(
                        str(path),
                        "folder holds no .nii/.nii.gz/.nrrd/.nhdr/.npy file and no DICOM series",
                    )
                )
            requests += [PatchRequest(entry, center, space) for entry in entries]
        else:  # a volume or a DICOM folder; a missing or unknown file fails when it is read
            requests.append(PatchRequest(path, center, space))
    return requests, failures
