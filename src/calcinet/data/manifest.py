"""Your own data: a CSV manifest of CT images, one row per finding (see ``data/README.md``).

``calcinet-train data=manifest data.manifest=path/to/manifest.csv`` trains on it. Columns:

- ``path``: a NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``) or NumPy (``.npy``, HU,
  axes (x, y, z)) file, a DICOM series folder, a DICOMDIR or an Enhanced (multi-frame) CT file;
  relative to the manifest's folder or absolute; read by :func:`calcinet.imaging.read_volume`,
  as ``calcinet-predict`` reads it;
- ``label``: ``benign``/``malignant`` or ``0``/``1``;
- optional ``patient_id``, ``split`` (``train``/``val``/``test``), ``center_x, center_y,
  center_z`` with ``coord_space`` (``voxel``, ``world`` = RAS mm, ``lps`` = DICOM/ITK mm),
  ``mask`` (a label map on the image's grid: one finding per connected component, centred on
  its centroid, ``id`` = path or id + ``#component``), ``spacing_x, spacing_y, spacing_z``
  (``.npy`` only), ``id``; every other column is metadata.

The whole manifest is checked when the source is built, before any training: every problem is
reported at once (:mod:`calcinet.data.validation`). Lines in reports are 1-based CSV lines, the
header being line 1.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from calcinet.config import ConfigError
from calcinet.data.keys import FINDING_KEY, QUANTILES_KEY
from calcinet.data.splits import (
    PURPOSES,
    SPLITS,
    first_keeping_ratio,
    split_problems,
    stratified_patient_split,
    with_split_problems,
)
from calcinet.data.validation import (
    DataValidationError,
    FactsCache,
    ImageFacts,
    Problem,
    file_stamp,
    format_report,
    image_problems,
    image_warnings,
)
from calcinet.imaging import image_format, mask_findings, read_volume, to_voxel
from calcinet.imaging.rows import (
    CENTER,
    LABELS,
    SPACING,
    FindingNames,
    parse_location,
    parse_number,
    read_csv,
)

if TYPE_CHECKING:
    from monai.transforms import Transform

log = logging.getLogger(__name__)

#: Columns the source interprets; every other column is kept as metadata in the records.
KNOWN = ("path", "label", "split", "patient_id", "coord_space", "id", "mask", *CENTER, *SPACING)
#: Record keys the pipeline uses itself; a manifest column may not be called so.
RESERVED = ("image", FINDING_KEY, "npy_spacing", "manifest_line", "component", QUANTILES_KEY)
ON_ERROR = ("raise", "skip")


# --- the manifest -------------------------------------------------------------------------------

def _metadata_columns(rows: list[dict[str, str]], columns: Sequence[str]) -> dict[str, type]:
    """Each metadata column's type: int or float when every non-empty value is one, else str
    (so batches collate: numbers become tensors, strings lists)."""
    kinds = {}
    for column in columns:
        values = [r[column] for r in rows if r[column] != ""]
        numbers = [parse_number(v) for v in values]
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
            raise ConfigError(f"data.on_error={on_error!r}: expected one of {', '.join(ON_ERROR)}")
        npy_spacing = [float(s) for s in npy_spacing]
        if len(npy_spacing) != 3 or min(npy_spacing) <= 0:
            raise ConfigError(f"data.npy_spacing={npy_spacing}: expected three positive numbers "
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
        #: Facts a user should hear that do not stop training (an assumed NRRD space ...).
        self.warnings: list[Problem] = []
        self.skipped: list[Problem] = []
        self.n_rows = 0
        self._records: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
        self._stamps: dict[str, list[int]] = {}
        self._load()
        if self.warnings and not self.validate_only:
            log.warning("%s", format_report(str(self.path), self.warnings, self.n_rows,
                                            kind="warning"))
        if self.problems and not self.validate_only:
            if on_error == "skip" and all(p in self.skipped for p in self.problems):
                log.warning("%s\n(data.on_error=skip: these rows are left out and listed in "
                            "the run folder's artifacts/skipped_rows.csv)", self._report())
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
            header, raw = read_csv(self.path)
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
        parsed = self._check_images([self._parse_row(line, row) for line, row in rows])
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
                                  "center": [], "coord_space": "", "spacing": self.npy_spacing,
                                  "mask": None, "component": None, "id": None}
        location, problems = parse_location(row, self.path.parent)
        for column, message in problems:
            problem(column, message)
        if location is not None:
            parsed.update(file=location.path.resolve(), format=image_format(location.path),
                          center=list(location.center or []),
                          coord_space=location.coord_space if location.center else "",
                          mask=location.mask.resolve() if location.mask else None,
                          spacing=list(location.npy_spacing or self.npy_spacing),
                          id=location.id)
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
        return parsed

    def _facts(self, file: Path, spacing: list[float]) -> ImageFacts | str:
        """An image's facts (from the cache when the file is unchanged), or why it is unreadable."""
        npy = image_format(file) == "npy"
        key = json.dumps([str(file), spacing if npy else None])
        try:
            stamp = file_stamp(file)
            self._stamps[str(file)] = stamp
            cached = self.facts_cache.get(key, stamp)
            if cached is not None:
                return cached
            facts = ImageFacts.of(read_volume(file, tuple(spacing)))
        except ValueError as error:  # ReadError: "<path>: <reason>; <fix>"
            message = str(error)
            return message[len(f"{file}: "):] if message.startswith(f"{file}: ") else message
        except OSError as error:
            return f"cannot be read ({error.strerror or error})"
        self.facts_cache.put(key, stamp, facts)
        return facts

    def _components(self, r: dict[str, Any], facts: ImageFacts) -> list[dict[str, Any]] | str:
        """One parsed row per connected component of the row's mask, centred on its centroid."""
        try:
            self._stamps[str(r["mask"])] = file_stamp(r["mask"])
            mask = read_volume(r["mask"], tuple(r["spacing"]))
            found = mask_findings(mask, (facts.shape, np.asarray(facts.affine)))
        except (ValueError, OSError) as error:
            message = str(error)
            return message[len(f"{r['mask']}: "):] if message.startswith(f"{r['mask']}: ") \
                else message
        return [{**r, "center": list(f.center_world), "coord_space": "world",
                 "component": f.component} for f in found]

    def _check_images(self, parsed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Read each distinct image once (in threads) and check it for every row that uses it;
        returns the rows with each mask row replaced by its findings."""
        wanted = {(r["file"], tuple(r["spacing"])) for r in parsed if r["file"]}
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {w: pool.submit(self._facts, w[0], list(w[1])) for w in wanted}
            facts = {w: f.result() for w, f in futures.items()}
        expanded = []
        for r in parsed:
            if not r["file"]:
                expanded.append(r)
                continue
            found = facts[(r["file"], tuple(r["spacing"]))]
            text = r["row"]["path"]
            if isinstance(found, str):
                self.problems.append(Problem(found, r["line"], "path", text))
                expanded.append(r)
                continue
            whole_scan = bool(r["center"] or r["mask"])
            for message in image_warnings(found, whole_scan=whole_scan):
                self.warnings.append(Problem(message, r["line"], "path", text))
            for message in image_problems(found, whole_scan=whole_scan):
                self.problems.append(Problem(message, r["line"], "path", text))
            if r["mask"]:
                components = self._components(r, found)
                if isinstance(components, str):
                    self.problems.append(Problem(components, r["line"], "mask", r["row"]["mask"]))
                    expanded.append(r)
                else:
                    expanded += components
                continue
            expanded.append(r)
            if r["center"]:
                voxel = to_voxel(r["center"], r["coord_space"], np.asarray(found.affine))
                shape = np.asarray(found.shape)
                if (voxel < -0.5).any() or (voxel > shape - 0.5).any():
                    where = ", ".join(f"{v:g}" for v in r["center"])
                    space = "voxel" if r["coord_space"] == "voxel" else (
                        f"{r['coord_space']} mm, voxel ({', '.join(f'{v:.2f}' for v in voxel)})")
                    self.problems.append(Problem(
                        f"centre ({where}) ({space}) lies outside the image (shape "
                        f"{'x'.join(map(str, shape))}); expected a point inside it",
                        r["line"], "center_x", r["row"]["center_x"]))
        return expanded

    def _check_duplicates(self, parsed: list[dict[str, Any]]) -> None:
        first: dict[tuple, int] = {}
        names = FindingNames()
        for r in parsed:
            if r["file"] is not None:
                # A mask row whose mask could not be read has no centre yet: its mask tells it
                # apart (its own problem is already listed).
                mask = "" if r["center"] else (r["row"].get("mask") or "")
                key = (str(r["file"]), r["coord_space"], tuple(r["center"]), mask)
                if key in first:
                    what = "file and centre" if r["center"] else "file"
                    self.problems.append(Problem(
                        f"same {what} as line {first[key]}; expected each finding once",
                        r["line"], "path", r["row"]["path"]))
                    continue
                first[key] = r["line"]
            if r["id"] is None:
                continue
            # Findings are told apart by their final names, '#N' added for a mask's findings.
            name = r["id"] if r["component"] is None else f"{r['id']}#{r['component']}"
            clash = names.clash(name, r["line"], given=bool(r["row"].get("id")))
            if clash:
                self.problems.append(Problem(clash, r["line"], "id", r["row"].get("id", "")))

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

    def class_counts(self, split: str) -> dict[int, int]:
        """``{0: benign, 1: malignant}`` findings of ``split`` (within its ``num_<split>``)."""
        counts = Counter(int(r["label"]) for r in self.records(split))
        return {0: counts.get(0, 0), 1: counts.get(1, 0)}

    def _patient(self, r: dict[str, Any]) -> str:
        """The patient: ``patient_id`` when given, else the image file (its findings together)."""
        return r["row"].get("patient_id") or str(r["file"])

    def _record(self, r: dict[str, Any], split: str, kinds: dict[str, type]) -> dict[str, Any]:
        row = r["row"]
        # The name calcinet-predict gives the same row (imaging.rows.finding_id).
        record_id = r["id"] if r["component"] is None else f"{r['id']}#{r['component']}"
        meta = {c: _cast(row[c], kind) for c, kind in kinds.items()}
        record = {
            "id": record_id,
            "label": int(r["label"]),
            "image": str(r["file"]),
            "manifest_line": int(r["line"]),
            **meta,
            "patient_id": row.get("patient_id") or row["path"],
            "split": split,
            "npy_spacing": list(r["spacing"]),
        }
        if r["component"] is not None:
            record["component"] = int(r["component"])
        if r["center"]:
            record[FINDING_KEY] = {"center": list(r["center"]), "coord_space": r["coord_space"]}
        return record

    # -- the source interface --

    def records(self, split: str) -> list[dict[str, Any]]:
        """The findings of ``split``; at most ``num_<split>`` of them, class ratio kept."""
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: expected one of {', '.join(SPLITS)}")
        records = self._records[split]
        keep = first_keeping_ratio([r["label"] for r in records], self.limits[split])
        return [records[i] for i in keep]

    def load_transforms(self) -> list[Transform]:
        from calcinet.data.transforms import ReadVolumed  # MONAI: imported when training

        return [ReadVolumed()]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "manifest": str(self.path.resolve()), "rows": self.n_rows,
                "patch_size": self.patch_size, "spacing": self.spacing,
                "on_error": self.on_error, "skipped_rows": len({p.line for p in self.skipped}),
                "limits": self.limits}

    def fingerprint(self) -> str:
        """Changes with the rows, the split, the crop size and any image file's size or mtime."""
        h = hashlib.sha256(json.dumps(
            [self.kind, self.patch_size, self.spacing, self.limits], sort_keys=True).encode())
        for split in SPLITS:
            for record in self.records(split):
                stamp = self._stamps.get(record["image"])
                h.update(json.dumps([record, stamp], sort_keys=True, default=str).encode())
        h.update(json.dumps(sorted(self._stamps.items())).encode())  # masks too
        return h.hexdigest()[:16]

    def write_artifacts(self, folder: Path) -> list[Path]:
        """``manifest.csv`` (a copy), ``splits.csv`` and, when rows were skipped,
        ``skipped_rows.csv``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = [Path(shutil.copyfile(self.path, folder / "manifest.csv"))]
        splits = folder / "splits.csv"
        with splits.open("w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["manifest_line", "id", "path", "patient_id", "label", "split"])
            rows = [r for s in SPLITS for r in self._records[s]]
            for r in sorted(rows, key=lambda r: r["manifest_line"]):
                writer.writerow([r["manifest_line"], r["id"], r["image"], r["patient_id"],
                                 r["label"], r["split"]])
        written.append(splits)
        if self.skipped:
            skipped = folder / "skipped_rows.csv"
            with skipped.open("w", newline="") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(["manifest_line", "column", "value", "problem"])
                for p in self.skipped:
                    writer.writerow([p.line, p.column or "", p.value or "", p.message])
            written.append(skipped)
        return written

    # -- reports --

    def _report(self) -> str:
        if all(p.line is None for p in self.problems):  # the manifest as a whole: no rows named
            return format_report(str(self.path), self.problems, self.n_rows)
        skip = self.on_error == "skip"
        footer = ("Lines are 1-based CSV lines (the header is line 1). "
                  + ("Rows with problems are left out (data.on_error=skip)." if skip else
                     "Fix them, or leave the bad rows out with data.on_error=skip."))
        return format_report(str(self.path), self.problems, self.n_rows, footer)

    def validation_report(self) -> str:
        """The full problem report, or a one-line summary of a clean manifest; then the
        warnings, one line each."""
        if self.problems:
            report = self._report()
        else:
            counts = []
            for split in SPLITS:
                c = Counter(r["label"] for r in self._records[split])
                counts.append(f"{split} {c[0]} benign / {c[1]} malignant")
            total = sum(len(v) for v in self._records.values())
            report = f"{self.path}: no problems; {total} findings ({', '.join(counts)})"
        ordered = sorted(self.warnings, key=lambda p: (p.line is None, p.line or 0))
        return "\n".join([report, *(f"  warning: {w}" for w in ordered)])


def check_manifest(manifest: str | Path, purpose: str = "training",
                   npy_spacing: Sequence[float] = (1.0, 1.0, 1.0), split_seed: int = 0,
                   val_fraction: float = 0.15, test_fraction: float = 0.15,
                   cache_dir: str | Path | None = None) -> int:
    """Print the report of ``manifest`` (every row, file and split, each problem with its CSV
    line, column and value) as ``calcinet-check-manifest`` does.

    ``purpose`` is a key of :data:`calcinet.data.splits.PURPOSES`: ``training`` needs both classes
    in train and val, ``evaluation`` accepts any split empty (an external test set). Returns the
    exit status: 0 clean, 1 problems found, 2 options that cannot work (one line printed).
    """
    try:
        source = ManifestSource(
            manifest, npy_spacing=list(npy_spacing), split_seed=split_seed,
            val_fraction=val_fraction, test_fraction=test_fraction, validate_only=True,
            cache_dir=cache_dir)
    except ValueError as error:
        print(f"check_manifest: error: {error}")
        return 2
    counts = {split: source.class_counts(split) for split in SPLITS}
    problems = split_problems(counts, PURPOSES[purpose]) if source.n_rows else []
    print(with_split_problems(source.validation_report(), problems))
    return 1 if source.problems or problems else 0
