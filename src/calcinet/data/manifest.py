"""Your own data: a CSV manifest of CT images, one row per finding (see ``data/README.md``).

``calcinet-train data=manifest data.manifest=path/to/manifest.csv`` trains on it. Columns:

- ``path``: a NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``) or NumPy (``.npy``, HU,
  axes (x, y, z)) file, or a DICOM series folder; relative to the manifest's folder or absolute;
- ``label``: ``benign``/``malignant`` or ``0``/``1``;
- optional ``patient_id``, ``split`` (``train``/``val``/``test``), ``center_x, center_y,
  center_z`` with ``coord_space`` (``voxel``, ``world`` = RAS mm, ``lps`` = DICOM/ITK mm),
  ``spacing_x, spacing_y, spacing_z`` (``.npy`` only), ``id``; every other column is metadata.

The whole manifest is checked when the source is built, before any training: every problem is
reported at once (:mod:`calcinet.data.validation`). Lines in reports are 1-based CSV lines, the
header being line 1.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import shutil
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import MetaTensor, NibabelReader, NrrdReader, NumpyReader, PydicomReader
from monai.transforms import BorderPad, EnsureChannelFirst, MapTransform, SpatialCrop, Transform
from monai.transforms.io.array import switch_endianness
from monai.utils import ImageMetaKey

from calcinet.data.splits import SPLITS, first_keeping_ratio, stratified_patient_split
from calcinet.data.validation import (
    DataValidationError,
    FactsCache,
    ImageFacts,
    Problem,
    file_stamp,
    format_report,
    image_problems,
)

log = logging.getLogger(__name__)

LABELS = {"benign": 0, "malignant": 1, "0": 0, "1": 1, "0.0": 0, "1.0": 1}
CENTER = ("center_x", "center_y", "center_z")
SPACING = ("spacing_x", "spacing_y", "spacing_z")
COORD_SPACES = ("voxel", "world", "lps")
#: Columns the source interprets; every other column is kept as metadata in the records.
KNOWN = ("path", "label", "split", "patient_id", "coord_space", "id", *CENTER, *SPACING)
#: Record keys the pipeline uses itself; a manifest column may not be called so.
RESERVED = ("image", "load", "manifest_line")
#: Value of voxels a crop takes from outside the scan: air.
PAD_HU = -1000.0
ON_ERROR = ("raise", "skip")


# --- reading ------------------------------------------------------------------------------------

def image_format(path: Path) -> str | None:
    """``"nifti"``, ``"nrrd"``, ``"npy"``, ``"dicom"`` (a folder) or None (unsupported)."""
    if path.is_dir():
        return "dicom"
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith((".nrrd", ".nhdr")):
        return "nrrd"
    if name.endswith(".npy"):
        return "npy"
    return None


def _reader(fmt: str):
    # A fresh reader per call: PydicomReader keeps per-read state, and CacheDataset loads in
    # threads.
    return {"nifti": NibabelReader, "nrrd": NrrdReader, "npy": NumpyReader,
            "dicom": PydicomReader}[fmt]()


def read_image(path: str | Path, fmt: str, npy_spacing: Sequence[float] = (1.0, 1.0, 1.0)
               ) -> MetaTensor:
    """Read an image with MONAI's reader for ``fmt`` as a ``[C, X, Y, Z]`` float32 MetaTensor.

    Affines are RAS (MONAI converts NRRD's and DICOM's LPS); DICOM rescale slope and intercept
    are applied by ``PydicomReader``; a ``.npy`` array gets ``affine = diag(npy_spacing)``.
    The reader is called directly rather than through ``LoadImage``, which would instantiate
    every reader MONAI knows on each construction and, when the chosen one fails, retry the file
    with all the others, burying the real error.
    """
    reader = _reader(fmt)
    array, meta = reader.get_data(reader.read(str(path)))
    meta = switch_endianness(meta, "<")
    meta[ImageMetaKey.FILENAME_OR_OBJ] = str(path)
    if fmt == "npy":
        meta["affine"] = np.diag([*(float(s) for s in npy_spacing), 1.0])
    array = np.ascontiguousarray(np.asarray(array), dtype=np.float32)
    image = MetaTensor.ensure_torch_and_prune_meta(array, meta)
    return EnsureChannelFirst()(image)


def to_voxel(center: Sequence[float], coord_space: str, affine: Any) -> np.ndarray:
    """A point as fractional voxel indices of an image with RAS ``affine``.

    ``voxel``: already indices (0-based, in the loaded array's axis order); ``world``: RAS mm;
    ``lps``: DICOM/ITK patient mm (x to the left, y to the back), i.e. RAS with x and y negated.
    """
    point = np.asarray(center, dtype=float)
    if coord_space == "voxel":
        return point
    if coord_space == "lps":
        point = point * np.array([-1.0, -1.0, 1.0])
    affine = np.asarray(affine, dtype=float)
    return np.linalg.solve(affine[:3, :3], point - affine[:3, 3])


def crop_box(center_voxel: Sequence[float], affine: Any, patch_size: Sequence[int],
             spacing: Sequence[float], margin: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Voxel ``[start, end)`` of a box centred on the nearest voxel to ``center_voxel`` that
    covers a ``patch_size * spacing`` mm patch in any orientation, plus ``margin`` voxels for
    the resampler. Odd-sized, so the centre voxel is the box's centre."""
    linear = np.asarray(affine, dtype=float)[:3, :3]
    half_mm = np.asarray(patch_size, dtype=float) * np.asarray(spacing, dtype=float) / 2
    # The world box's bounding box in voxels; for an oblique image also the patch laid along the
    # voxel axes (after Orientationd, the patch is cut along the world axis nearest each one).
    via_world = np.abs(np.linalg.inv(linear)) @ half_mm
    nearest = np.abs(linear).argmax(axis=0)
    along_axes = half_mm[nearest] / np.linalg.norm(linear, axis=0)
    half = np.ceil(np.maximum(via_world, along_axes) - 1e-6).astype(int)
    centre = np.rint(np.asarray(center_voxel, dtype=float)).astype(int)
    return centre - half - margin, centre + half + margin + 1


def crop_around(image: MetaTensor, center: Sequence[float], coord_space: str,
                patch_size: Sequence[int], spacing: Sequence[float]) -> MetaTensor:
    """Cut the box of :func:`crop_box` out of a whole scan, padding with air past its border.

    MONAI's ``SpatialCrop`` and ``BorderPad`` keep the affine right, so the shared resampling
    and the final centre crop place ``center`` in the middle of the patch (within a voxel).
    """
    affine = image.affine.numpy()
    start, end = crop_box(to_voxel(center, coord_space, affine), affine, patch_size, spacing)
    shape = np.asarray(image.shape[1:])
    inside_start, inside_end = np.clip(start, 0, shape), np.clip(end, 0, shape)
    inside_end = np.maximum(inside_end, inside_start)
    crop = SpatialCrop(roi_start=inside_start.tolist(), roi_end=inside_end.tolist())(image)
    before, after = inside_start - start, end - inside_end
    if before.any() or after.any():
        border = [int(v) for pair in zip(before, after, strict=True) for v in pair]
        crop = BorderPad(spatial_border=border, mode="constant", value=PAD_HU)(crop)
    return crop


class LoadManifestImaged(MapTransform):
    """Replace ``data["image"]`` (a path) by the image in HU, cut around the finding's centre when
    the row has one. The row's reading instructions (``data["load"]``) are consumed."""

    def __init__(self, patch_size: Sequence[int], spacing: Sequence[float]) -> None:
        super().__init__(keys=["image"])
        self.patch_size = tuple(int(s) for s in patch_size)
        self.spacing = tuple(float(s) for s in spacing)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        load = d.pop("load")
        image = read_image(d["image"], load["format"], load["spacing"])
        if load["center"]:
            image = crop_around(image, load["center"], load["coord_space"], self.patch_size,
                                self.spacing)
        d["image"] = image
        return d


# --- the manifest -------------------------------------------------------------------------------

def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _metadata_columns(rows: list[dict[str, str]], columns: Sequence[str]) -> dict[str, type]:
    """Each metadata column's type: int or float when every non-empty value is one, else str
    (so batches collate: numbers become tensors, strings lists)."""
    kinds = {}
    for column in columns:
        values = [r[column] for r in rows if r[column] != ""]
        numbers = [_number(v) for v in values]
        if column == "patient_id" or not values or any(n is None for n in numbers):
            kinds[column] = str
        elif all(float(n).is_integer() for n in numbers) and len(values) == len(rows):
            kinds[column] = int
        else:
            kinds[column] = float
    return kinds


def _cast(text: str, kind: type) -> Any:
    if kind is str:
        return text
    if text == "":
        return float("nan")
    return kind(float(text))


class ManifestSource:
    """Records from a CSV manifest, validated in full when built.

    Args:
        manifest: the CSV file (``data.manifest``).
        patch_size, spacing: the patch (voxels) and voxel size (mm), (x, y, z): how much of a
            whole scan to cut around a centre.
        npy_spacing: voxel size (x, y, z) mm of ``.npy`` files without ``spacing_*`` columns.
        split_seed, val_fraction, test_fraction: the patient-level stratified split used when
            the manifest has no ``split`` column.
        on_error: ``"raise"``: any problem stops with a :class:`DataValidationError` listing all;
            ``"skip"``: rows with problems are dropped with a warning and listed in
            ``skipped_rows.csv`` (problems of the whole dataset still raise).
        validate_only: never raise; the caller prints :meth:`validation_report`.
        num_train, num_val, num_test: use at most this many findings of a split (None: all),
            keeping the class ratio; for quick runs (``debug=smoke``).
        cache_dir: folder keeping image facts between checks (None: none).
    """

    kind = "manifest"

    def __init__(
        self,
        manifest: str | Path,
        patch_size: Sequence[int] = (48, 48, 48),
        spacing: Sequence[float] = (1.25, 1.25, 1.25),
        npy_spacing: Sequence[float] = (1.0, 1.0, 1.0),
        split_seed: int = 0,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        on_error: str = "raise",
        validate_only: bool = False,
        num_train: int | None = None,
        num_val: int | None = None,
        num_test: int | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"data.on_error={on_error!r}: expected one of {', '.join(ON_ERROR)}")
        npy_spacing = [float(s) for s in npy_spacing]
        if len(npy_spacing) != 3 or min(npy_spacing) <= 0:
            raise ValueError(f"data.npy_spacing={npy_spacing}: expected three positive numbers "
                             "(x, y, z) in mm")
        self.path = Path(manifest).expanduser()
        self.patch_size = [int(s) for s in patch_size]
        self.spacing = [float(s) for s in spacing]
        self.npy_spacing = npy_spacing
        self.split_seed = int(split_seed)
        self.fractions = (float(val_fraction), float(test_fraction))
        stratified_patient_split([], [], *self.fractions)  # checks the fractions
        self.on_error = on_error
        self.validate_only = bool(validate_only)
        self.limits = {"train": num_train, "val": num_val, "test": num_test}
        self.facts_cache = FactsCache(cache_dir)
        self.problems: list[Problem] = []
        self.skipped: list[Problem] = []
        self.n_rows = 0
        self._records: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
        self._stamps: dict[str, list[int]] = {}
        self._load()
        if self.problems and not self.validate_only:
            if on_error == "skip" and all(p in self.skipped for p in self.problems):
                log.warning("%s\n(data.on_error=skip: these rows are left out and listed in "
                            "skipped_rows.csv)", self._report())
            else:
                raise DataValidationError(self._report())

    # -- reading and checking --

    def _load(self) -> None:
        if not self.path.is_file():
            self.problems.append(Problem(
                f"manifest not found: {self.path.resolve()}; expected a CSV file with columns "
                "path,label (data.manifest=path/to/manifest.csv)"))
            return
        try:
            with self.path.open(newline="", encoding="utf-8-sig") as fh:
                reader = csv.reader(fh)
                header = [h.strip() for h in next(reader, [])]
                raw = [(reader.line_num, values) for values in reader
                       if any(v.strip() for v in values)]
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            self.problems.append(Problem(f"cannot be read as CSV: {error}"))
            return
        if not self._check_header(header) or not raw:
            if not raw and not self.problems:
                self.problems.append(Problem("no rows; expected one row per finding"))
            return
        self.header = header
        rows = []
        for line, values in raw:
            if len(values) != len(header):
                self.problems.append(Problem(
                    f"{len(values)} values for {len(header)} columns; expected one value per "
                    "column (quote values that contain commas)", line))
                continue
            rows.append((line, {h: v.strip() for h, v in zip(header, values, strict=True)}))
        self.n_rows = len(raw)
        parsed = [self._parse_row(line, row) for line, row in rows]
        self._check_images(parsed)
        self._check_duplicates(parsed)
        # Problems of a data row can be skipped; header problems (line 1) cannot.
        data_lines = {line for line, _ in raw}
        bad = {p.line for p in self.problems if p.line in data_lines}
        if self.on_error == "skip":
            self.skipped = [p for p in self.problems if p.line in data_lines]
        usable = [r for r in parsed if r["line"] not in bad]
        self._assign_splits(usable, rows)
        self.facts_cache.save()

    def _check_header(self, header: list[str]) -> bool:
        """Column-level problems; False when rows cannot be read at all."""
        found = ", ".join(header) or "none"
        duplicated = sorted(h for h, n in Counter(header).items() if n > 1)
        for name in duplicated:
            self.problems.append(Problem(f"column {name!r} appears more than once", 1, name))
        for name in ("path", "label"):
            if name not in header:
                self.problems.append(Problem(
                    f"missing required column {name!r} (columns found: {found}); expected at "
                    "least path,label", 1))
        for name in RESERVED:
            if name in header:
                self.problems.append(Problem(
                    f"column name {name!r} is used by calcinet itself; rename it", 1, name))
        for group in (CENTER, SPACING):
            present = [c for c in group if c in header]
            if present and len(present) < 3:
                missing = [c for c in group if c not in header]
                self.problems.append(Problem(
                    f"has {', '.join(present)} but not {', '.join(missing)}; expected all three",
                    1, missing[0]))
        if all(c in header for c in CENTER) and "coord_space" not in header:
            self.problems.append(Problem(
                "the center_x/y/z columns need a coord_space column (voxel, world or lps)", 1,
                "coord_space"))
        return "path" in header and "label" in header and not duplicated

    def _parse_row(self, line: int, row: dict[str, str]) -> dict[str, Any]:
        """Interpret one row; problems go to ``self.problems``."""
        def problem(column: str, message: str) -> None:
            self.problems.append(Problem(message, line, column, row.get(column, "")))

        parsed: dict[str, Any] = {"line": line, "row": row, "file": None, "format": None,
                                  "center": [], "coord_space": "", "spacing": self.npy_spacing}
        text = row["path"]
        if not text:
            problem("path", "empty; expected an image file or DICOM folder")
        else:
            file = Path(text).expanduser()
            file = file if file.is_absolute() else self.path.parent / file
            fmt = image_format(file) if file.exists() else None
            if not file.exists():
                problem("path", f"file not found: {file.resolve()}")
            elif file.name.lower().endswith(".dcm"):
                problem("path", "a single DICOM file is one 2D slice; expected the folder of its "
                                "series")
            elif fmt is None:
                problem("path", "unsupported format; expected .nii, .nii.gz, .nrrd, .nhdr, .npy "
                                "or a DICOM series folder")
            else:
                parsed["file"], parsed["format"] = file.resolve(), fmt
        label = LABELS.get(row["label"].lower())
        if label is None:
            problem("label", "unknown label; expected benign, malignant, 0 or 1")
        parsed["label"] = label
        if "split" in row:
            split = row["split"].lower()
            if split not in SPLITS:
                problem("split", "unknown split; expected train, val or test")
            parsed["split"] = split
        if "patient_id" in row and not row["patient_id"]:
            problem("patient_id", "empty; expected a patient identifier (leave the column out "
                                  "to keep findings of one image file together instead)")
        if "id" in row and not row["id"]:
            problem("id", "empty; expected a unique identifier")
        if all(c in row for c in CENTER) and "coord_space" in row:
            values = [row[c] for c in CENTER]
            if any(values):
                numbers = [_number(v) for v in values]
                for column, value in zip(CENTER, numbers, strict=True):
                    if value is None:
                        problem(column, "expected a finite number (all three centre values, or "
                                        "none for an image that is already the patch)")
                space = row["coord_space"].lower()
                if space not in COORD_SPACES:
                    problem("coord_space", "expected voxel, world (RAS mm) or lps (DICOM mm)")
                if None not in numbers and space in COORD_SPACES:
                    parsed["center"], parsed["coord_space"] = numbers, space
                else:
                    parsed["bad_center"] = True
        if parsed["format"] == "npy" and all(c in row for c in SPACING):
            values = [row[c] for c in SPACING]
            if any(values):
                numbers = [_number(v) for v in values]
                for column, value in zip(SPACING, numbers, strict=True):
                    if value is None or value <= 0:
                        problem(column, "expected a voxel size in mm > 0 (or all three empty for "
                                        "data.npy_spacing)")
                if all(n is not None and n > 0 for n in numbers):
                    parsed["spacing"] = numbers
        return parsed

    def _facts(self, file: Path, fmt: str, spacing: list[float]) -> ImageFacts | str:
        """An image's facts (from the cache when the file is unchanged), or why it is unreadable."""
        key = json.dumps([str(file), fmt, spacing if fmt == "npy" else None])
        try:
            stamp = file_stamp(file)
            self._stamps[str(file)] = stamp
            cached = self.facts_cache.get(key, stamp)
            if cached is not None:
                return cached
            image = read_image(file, fmt, spacing)
            facts = ImageFacts.of(image, image.affine)
        except Exception as error:  # noqa: BLE001 - any reader failure is reported, not raised
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            return f"cannot be read as {fmt}: {type(error).__name__}: {reason}"[:300]
        self.facts_cache.put(key, stamp, facts)
        return facts

    def _check_images(self, parsed: list[dict[str, Any]]) -> None:
        """Read each distinct image once (in threads) and check it for every row that uses it."""
        wanted = {(r["file"], r["format"], tuple(r["spacing"])) for r in parsed if r["file"]}
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {w: pool.submit(self._facts, w[0], w[1], list(w[2])) for w in wanted}
            facts = {w: f.result() for w, f in futures.items()}
        for r in parsed:
            if not r["file"]:
                continue
            found = facts[(r["file"], r["format"], tuple(r["spacing"]))]
            text = r["row"]["path"]
            if isinstance(found, str):
                self.problems.append(Problem(found, r["line"], "path", text))
                continue
            for message in image_problems(found, whole_scan=bool(r["center"])):
                self.problems.append(Problem(message, r["line"], "path", text))
            if r["center"] and len(found.spatial_shape) == 3:
                voxel = to_voxel(r["center"], r["coord_space"], found.affine)
                shape = np.asarray(found.spatial_shape)
                if (voxel < -0.5).any() or (voxel > shape - 0.5).any():
                    where = ", ".join(f"{v:g}" for v in r["center"])
                    space = "voxel" if r["coord_space"] == "voxel" else (
                        f"{r['coord_space']} mm is voxel ({', '.join(f'{v:.1f}' for v in voxel)})")
                    self.problems.append(Problem(
                        f"centre ({where}) {space} is outside the image (shape "
                        f"{'x'.join(map(str, shape))}); expected a point inside it",
                        r["line"], "center_x", r["row"]["center_x"]))

    def _check_duplicates(self, parsed: list[dict[str, Any]]) -> None:
        first: dict[tuple, int] = {}
        first_id: dict[str, int] = {}
        for r in parsed:
            if r["file"] is not None and not r.get("bad_center"):
                key = (str(r["file"]), r["coord_space"], tuple(r["center"]))
                if key in first:
                    what = "file and centre" if r["center"] else "file"
                    self.problems.append(Problem(
                        f"same {what} as line {first[key]}; expected each finding once",
                        r["line"], "path", r["row"]["path"]))
                else:
                    first[key] = r["line"]
            if "id" in r["row"] and r["row"]["id"]:
                if r["row"]["id"] in first_id:
                    self.problems.append(Problem(
                        f"same id as line {first_id[r['row']['id']]}; expected unique ids",
                        r["line"], "id", r["row"]["id"]))
                else:
                    first_id.setdefault(r["row"]["id"], r["line"])

    def _assign_splits(self, usable: list[dict[str, Any]],
                       rows: list[tuple[int, dict[str, str]]]) -> None:
        """Split the usable rows and check every split can train/evaluate: both classes."""
        explicit = "split" in self.header
        if explicit:
            patient_splits: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
            for r in usable:
                patient = r["row"].get("patient_id") or r["row"]["path"]
                patient_splits[patient][r["split"]].append(r["line"])
            for patient, splits in patient_splits.items():
                if len(splits) > 1:
                    where = " and ".join(
                        f"{s} (line{'s' if len(lines) > 1 else ''} "
                        f"{', '.join(map(str, lines))})" for s, lines in splits.items())
                    self.problems.append(Problem(
                        f"patient {patient!r} is in {where}; expected all findings of a patient "
                        "in one split (a patient in two splits leaks into the evaluation)"))
            assigned = [r["split"] for r in usable]
        else:
            assigned = stratified_patient_split(
                [r["label"] for r in usable], [self._patient(r) for r in usable],
                *self.fractions, seed=self.split_seed)
        metadata = [c for c in self.header if c not in KNOWN or c == "patient_id"]
        kinds = _metadata_columns([row for _, row in rows], metadata)
        for r, split in zip(usable, assigned, strict=True):
            self._records[split].append(self._record(r, split, kinds))
        how = ("move findings between splits in the split column" if explicit else
               "change data.split_seed or data.val_fraction/test_fraction, or add findings")
        left_out = self.n_rows - len(usable)
        if left_out:
            how += f"; counted without the {left_out} row{'s' * (left_out != 1)} with problems"
        for split in SPLITS:
            counts = Counter(r["label"] for r in self._records[split])
            if split != "test" and not self._records[split]:
                self.problems.append(Problem(f"split {split!r} is empty; expected findings of "
                                             f"both classes ({how})"))
            elif self._records[split] and len(counts) < 2:
                only = "benign" if 0 in counts else "malignant"
                self.problems.append(Problem(
                    f"split {split!r} has only {only} findings ({sum(counts.values())}); expected "
                    f"both classes to train and measure AUROC ({how})"))

    def _patient(self, r: dict[str, Any]) -> str:
        """The patient: ``patient_id`` when given, else the image file (its findings together)."""
        return r["row"].get("patient_id") or str(r["file"])

    def _record(self, r: dict[str, Any], split: str, kinds: dict[str, type]) -> dict[str, Any]:
        row = r["row"]
        where = ",".join(f"{v:g}" for v in r["center"])
        record_id = row.get("id") or (
            f"{row['path']}@{r['coord_space']}:{where}" if r["center"] else row["path"])
        meta = {c: _cast(row[c], kind) for c, kind in kinds.items()}
        return {
            "id": record_id,
            "label": int(r["label"]),
            "image": str(r["file"]),
            "manifest_line": int(r["line"]),
            **meta,
            "patient_id": row.get("patient_id") or row["path"],
            "split": split,
            "load": {"format": r["format"], "center": list(r["center"]),
                     "coord_space": r["coord_space"], "spacing": list(r["spacing"])},
        }

    # -- the source interface --

    def records(self, split: str) -> list[dict[str, Any]]:
        """The findings of ``split``; at most ``num_<split>`` of them, class ratio kept."""
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: expected one of {', '.join(SPLITS)}")
        records = self._records[split]
        keep = first_keeping_ratio([r["label"] for r in records], self.limits[split])
        return [records[i] for i in keep]

    def load_transforms(self) -> list[Transform]:
        return [LoadManifestImaged(self.patch_size, self.spacing)]

    def fingerprint(self) -> str:
        """Changes with the rows, the split, the crop size and any image file's size or mtime."""
        h = hashlib.sha256(json.dumps(
            [self.kind, self.patch_size, self.spacing, self.limits], sort_keys=True).encode())
        for split in SPLITS:
            for record in self.records(split):
                stamp = self._stamps.get(record["image"])
                h.update(json.dumps([record, stamp], sort_keys=True, default=str).encode())
        return h.hexdigest()[:16]

    def write_artifacts(self, folder: Path) -> list[Path]:
        """``manifest.csv`` (a copy), ``splits.csv`` and, when rows were skipped,
        ``skipped_rows.csv``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = [Path(shutil.copyfile(self.path, folder / "manifest.csv"))]
        splits = folder / "splits.csv"
        with splits.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["manifest_line", "id", "path", "patient_id", "label", "split"])
            rows = [r for s in SPLITS for r in self._records[s]]
            for r in sorted(rows, key=lambda r: r["manifest_line"]):
                writer.writerow([r["manifest_line"], r["id"], r["image"], r["patient_id"],
                                 r["label"], r["split"]])
        written.append(splits)
        if self.skipped:
            skipped = folder / "skipped_rows.csv"
            with skipped.open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["manifest_line", "column", "value", "problem"])
                for p in self.skipped:
                    writer.writerow([p.line, p.column or "", p.value or "", p.message])
            written.append(skipped)
        return written

    # -- reports --

    def _report(self) -> str:
        skip = self.on_error == "skip"
        footer = ("Lines are 1-based CSV lines (the header is line 1). "
                  + ("Rows with problems are left out (data.on_error=skip)." if skip else
                     "Fix them, or leave the bad rows out with data.on_error=skip."))
        return format_report(str(self.path), self.problems, self.n_rows, footer)

    def validation_report(self) -> str:
        """The full problem report, or a one-line summary of a clean manifest."""
        if self.problems:
            return self._report()
        counts = []
        for split in SPLITS:
            c = Counter(r["label"] for r in self._records[split])
            counts.append(f"{split} {c[0]} benign / {c[1]} malignant")
        total = sum(len(v) for v in self._records.values())
        return f"{self.path}: no problems; {total} findings ({', '.join(counts)})"


def check_main(argv: Sequence[str] | None = None) -> int:
    """``python scripts/check_manifest.py manifest.csv``: print the report; 0 if clean, else 1."""
    parser = argparse.ArgumentParser(
        prog="check_manifest", description="Check a calcinet manifest without training: every "
        "row, file and split, each problem with its CSV line, column and value.")
    parser.add_argument("manifest", help="the CSV file (path,label[,patient_id,split,...])")
    parser.add_argument("--npy-spacing", type=float, nargs=3, default=[1.0, 1.0, 1.0],
                        metavar=("X", "Y", "Z"), help="voxel size (mm) of .npy files")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--test-fraction", type=float, default=0.15)
    parser.add_argument("--cache-dir", default=None,
                        help="keep image facts here so a second check reads no voxels")
    args = parser.parse_args(argv)
    try:
        source = ManifestSource(
            args.manifest, npy_spacing=args.npy_spacing, split_seed=args.split_seed,
            val_fraction=args.val_fraction, test_fraction=args.test_fraction,
            validate_only=True, cache_dir=args.cache_dir)
    except ValueError as error:
        print(f"check_manifest: error: {error}")
        return 2
    print(source.validation_report())
    return 1 if source.problems else 0
