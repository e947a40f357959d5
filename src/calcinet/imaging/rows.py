"""The columns of a manifest row that say where a finding is, read the same way everywhere.

Training (:mod:`calcinet.data.manifest`) and ``calcinet-predict`` read manifests with this module,
so a row means one finding on both sides: ``path`` (relative to the CSV's folder, or absolute),
``center_x, center_y, center_z`` with ``coord_space``, or ``mask`` (one finding per connected
component), and ``spacing_x, spacing_y, spacing_z`` for ``.npy`` files. CSV files are read as
UTF-8 with or without a byte-order mark (Excel writes one).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from calcinet.imaging.geometry import COORD_SPACES, FORMATS_TEXT, image_format

CENTER = ("center_x", "center_y", "center_z")
SPACING = ("spacing_x", "spacing_y", "spacing_z")
LOCATION_COLUMNS = ("path", *CENTER, "coord_space", "mask", *SPACING)
#: Values of a manifest's ``label`` column (the truth): 0 benign, 1 malignant.
LABELS = {"benign": 0, "malignant": 1, "0": 0, "1": 1, "0.0": 0, "1.0": 1}


@dataclass(frozen=True)
class Location:
    """Where one finding is: a file (or DICOM folder) and a centre, or a mask to find them in.

    ``component`` is set on the findings a mask gives (1-based, see
    :func:`calcinet.imaging.mask_findings`); ``npy_spacing`` is the row's own voxel size (mm) of
    an ``.npy`` file, None for the default; ``id`` names a manifest row's finding (its ``id``
    column, or :func:`finding_id`'s name), None for a file given directly; ``source``
    names the manifest line it came from (``manifest.csv:5``), None for a file given directly;
    ``label`` is the row's truth (0 benign, 1 malignant) when the manifest gives one.
    """

    path: Path
    center: tuple[float, float, float] | None = None
    coord_space: str = "world"
    mask: Path | None = None
    npy_spacing: tuple[float, float, float] | None = None
    component: int | None = None
    id: str | None = None
    source: str | None = None
    label: int | None = None


def read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """``(header, [(line, values), ...])`` of a CSV file (1-based lines, header stripped, blank
    lines skipped); UTF-8 with or without a byte-order mark.

    Raises:
        OSError, UnicodeDecodeError, csv.Error: the file cannot be read as CSV.
    """
    with Path(path).open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
        rows = [(reader.line_num, values) for values in reader if any(v.strip() for v in values)]
    return header, rows


def parse_number(text: str) -> float | None:
    """A finite float, or None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def resolve(text: str, base: Path) -> Path:
    """A path cell: absolute, or relative to the manifest's folder ``base``."""
    path = Path(text.strip()).expanduser()
    return path if path.is_absolute() else base / path


def parse_location(row: Mapping[str, str], base: Path, default_space: str | None = None
                   ) -> tuple[Location | None, list[tuple[str, str]]]:
    """The :class:`Location` of a manifest row, or None, and its problems ``(column, message)``.

    Args:
        row: cells by column name (values stripped).
        base: the manifest's folder.
        default_space: coordinate space of a row whose ``coord_space`` is missing or empty;
            None: the column is required with a centre.
    """
    problems: list[tuple[str, str]] = []
    text = row.get("path", "").strip()
    path = None
    if not text:
        problems.append(("path", "empty; expected an image file or DICOM folder"))
    else:
        path = resolve(text, base)
        if not path.exists():
            problems.append(("path", f"file not found: {path.resolve()}"))
        elif image_format(path) is None:
            problems.append(("path", f"unsupported format; expected {FORMATS_TEXT}"))
    center, space = None, default_space or "world"
    cells = [row.get(c, "").strip() for c in CENTER]
    if any(cells):
        numbers = [parse_number(v) for v in cells]
        for column, value in zip(CENTER, numbers, strict=True):
            if value is None:
                problems.append((column, "expected a finite number (all three centre values, "
                                         "or none for an image that is already the patch)"))
        given = row.get("coord_space", "").strip().lower() or default_space
        if given not in COORD_SPACES:
            problems.append(("coord_space", "expected world (RAS mm), lps (DICOM mm) or voxel"))
        elif None not in numbers:
            center, space = tuple(numbers), given  # type: ignore[assignment]
    mask = None
    if row.get("mask", "").strip():
        mask = resolve(row["mask"], base)
        if any(cells):
            problems.append(("mask", "a row has either a centre or a mask, not both; expected "
                                     "one finding per centre row, or one per connected component "
                                     "of the mask"))
        elif not mask.is_file():
            problems.append(("mask", f"file not found: {mask.resolve()}"))
        elif image_format(mask) in (None, "dicom"):
            problems.append(("mask", "unsupported format; expected a label map in .nii, "
                                     ".nii.gz, .nrrd, .nhdr or .npy on the image's grid"))
    spacing = None
    cells = [row.get(c, "").strip() for c in SPACING]
    if any(cells) and path is not None and image_format(path) == "npy":
        numbers = [parse_number(v) for v in cells]
        for column, value in zip(SPACING, numbers, strict=True):
            if value is None or value <= 0:
                problems.append((column, "expected a voxel size in mm > 0 (or all three empty "
                                         "for the default)"))
        if all(n is not None and n > 0 for n in numbers):
            spacing = tuple(numbers)
    if problems:
        return None, problems
    return Location(path, center, space, mask, spacing,  # type: ignore[arg-type]
                    id=finding_id(row, center, space)), problems


def finding_id(row: Mapping[str, str], center: tuple[float, float, float] | None,
               coord_space: str) -> str:
    """The name of a manifest row's finding, the same in ``calcinet-evaluate``'s predictions and
    ``calcinet-predict``'s rows: the row's ``id`` when given, else built from the row as written:
    ``<path>@<coord_space>:x,y,z`` for a centre (``%g`` numbers), ``<path>@mask:<mask>`` for a
    mask, ``<path>`` for an image that is the patch. A mask's findings add ``#N`` (the
    component) to it, so two masks on one scan never name a finding alike.
    """
    given = row.get("id", "").strip()
    if given:
        return given
    path = row.get("path", "").strip()
    if row.get("mask", "").strip():
        return f"{path}@mask:{row['mask'].strip()}"
    if center is not None:
        return f"{path}@{coord_space}:{','.join(f'{v:g}' for v in center)}"
    return path


class FindingNames:
    """The finding names of one manifest so far, each with its first line: the one check that
    no two rows end with the same name (:func:`finding_id`, ``#N`` added for a mask's
    findings), which evaluate's predictions and predict's rows are keyed on. Used by the
    manifest check and by ``calcinet-predict``."""

    def __init__(self) -> None:
        self._first: dict[str, int] = {}

    def clash(self, name: str, line: int, given: bool) -> str | None:
        """None, and ``name`` kept for ``line``, when no earlier line holds it; else the problem
        (``given``: the name is the row's ``id`` cell rather than one made from the row)."""
        first = self._first.setdefault(name, line)
        if first == line:
            return None
        made = "" if given else " (the name made from its path, centre or mask)"
        return f"finding named {name!r} as on line {first}{made}; expected unique ids"
