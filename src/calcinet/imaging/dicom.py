"""DICOM read by its geometry: series folders, Enhanced (multi-frame) CT files and DICOMDIR trees.

pydicom reads and decodes the files (compressed transfer syntaxes through the pylibjpeg plugins),
and highdicom builds the volume from the patient geometry: ``get_volume_from_series`` for a series
of single-frame slices, ``Image.get_volume`` for an Enhanced CT file, whose geometry and rescale
live in its functional groups. Both apply the modality LUT (rescale slope and intercept), so the
values are HU.

Checks made here before any volume is built, because every library tried lets some of them
through silently (SimpleITK spreads slices evenly over a gap, stacks a duplicate by file name and
ignores a gantry tilt; see ``data/README.md``). Each refusal is one line naming the file, the
reason and the fix:

- the files of a folder are grouped by ``SeriesInstanceUID``; files without pixel data (a
  ``DICOMDIR``, Philips ``DIRFILE``) are skipped; two series in one folder are refused;
- ``Modality`` other than CT, colour images (``SamplesPerPixel`` > 1), localizers and a single 2D
  slice are refused;
- slices are ordered by their position along the slice normal (never by ``InstanceNumber`` or
  file name); a duplicate position, or a step between neighbours that differs from the median
  step by more than :data:`SPACING_TOLERANCE` (relative, at least :data:`SPACING_TOLERANCE_MM`),
  is refused with the slices and the step named: a gap is never spread evenly;
- a gantry tilt (slices shifted in plane by more than half a pixel from first to last) is
  refused: resample such a series onto an axial grid first (dcm2niix does).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from calcinet.imaging.geometry import LPS_TO_RAS
from calcinet.imaging.readers import ReadError, Volume

#: Largest relative difference between one slice step and the series' median step.
SPACING_TOLERANCE = 0.01
#: ... but never less than this (positions are often written with two decimals).
SPACING_TOLERANCE_MM = 0.02
#: Two slices closer than this along the normal are at one position (a duplicate).
DUPLICATE_MM = 1e-3
#: SOP Class UID of a DICOMDIR (Media Storage Directory Storage).
DICOMDIR_UID = "1.2.840.10008.1.3.10"


def _line(text: str) -> str:
    """A library message on one line."""
    return " ".join(str(text).split())


def _where(ds) -> str:
    """A slice named by its file, InstanceNumber and position."""
    name = Path(str(getattr(ds, "filename", "") or "?")).name
    number = ds.get("InstanceNumber")
    return f"{name} (InstanceNumber {number})" if number is not None else name


#: Elements larger than this are read from the file only when used (the pixel data, once the
#: checks have passed).
DEFER_BYTES = 4096


def _read_headers(files: Sequence[Path], strict: bool) -> tuple[list, list[str]]:
    """Datasets (pixel data deferred) of the DICOM files among ``files``, and why others failed;
    files that are not DICOM are skipped unless ``strict``."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    datasets, problems = [], []
    for file in files:
        try:
            ds = pydicom.dcmread(file, defer_size=DEFER_BYTES)
        except InvalidDicomError as error:
            if strict:
                problems.append(f"not a DICOM file ({_line(error)})")
            continue  # not DICOM (notes, thumbnails): not part of any series
        except (OSError, ValueError, EOFError) as error:
            problems.append(f"{file.name}: {_line(error)}")
            continue
        if ds.get("SOPClassUID") == DICOMDIR_UID or "PixelData" not in ds:
            continue  # a directory or another object without an image
        datasets.append(ds)
    return datasets, problems


def _dicomdir_series(dicomdir: Path) -> dict[str, list[Path]]:
    """The image files a DICOMDIR lists, by series UID."""
    from pydicom.fileset import FileSet

    files: dict[str, list[Path]] = defaultdict(list)
    for instance in FileSet(dicomdir):
        if instance.node.record_type == "IMAGE":  # the SERIES record above gives its UID
            files[str(getattr(instance, "SeriesInstanceUID", ""))].append(Path(instance.path))
    return files


def _series_files(path: Path) -> tuple[Path, list[Path]]:
    """What to read for ``path``: ``(where, files)``; follows a DICOMDIR to its one series."""
    dicomdir = path if path.is_file() else path / "DICOMDIR"
    if dicomdir.is_file() and (dicomdir.name.upper() == "DICOMDIR" or _is_dicomdir(dicomdir)):
        try:
            series = _dicomdir_series(dicomdir)
        except Exception as error:  # noqa: BLE001 - pydicom raises several types
            raise ReadError(f"{dicomdir}: a DICOMDIR that cannot be read ({_line(error)}); "
                            "give the folder of one series instead") from None
        if not series:
            raise ReadError(f"{dicomdir}: a DICOMDIR that lists no image; give the folder of "
                            "one series instead")
        if len(series) > 1:
            listed = "; ".join(f"{len(files)} images in {files[0].parent}"
                               for files in series.values())
            raise ReadError(f"{dicomdir}: a DICOMDIR listing {len(series)} series ({listed}); "
                            "expected one: give the folder of the series to use")
        return dicomdir, next(iter(series.values()))
    if path.is_file():
        return path, [path]
    files = sorted(p for p in path.iterdir() if p.is_file())
    return path, files


def _is_dicomdir(file: Path) -> bool:
    import pydicom

    try:
        ds = pydicom.dcmread(file, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # noqa: BLE001
        return False
    return ds.get("SOPClassUID") == DICOMDIR_UID


def _check_kind(datasets: Sequence, where: Path) -> None:
    """Refuse what cannot be a CT volume in HU: another modality, colour, a localizer."""
    first = datasets[0]
    modality = str(first.get("Modality", "")).upper()
    if modality and modality != "CT":
        raise ReadError(f"{where}: DICOM Modality {modality!r}; calcinet reads CT in HU, "
                        "expected Modality 'CT'")
    samples = int(first.get("SamplesPerPixel", 1))
    if samples != 1 or str(first.get("PhotometricInterpretation", "")).startswith(
            ("RGB", "YBR", "PALETTE")):
        raise ReadError(f"{where}: a colour image (SamplesPerPixel {samples}, "
                        f"PhotometricInterpretation {first.get('PhotometricInterpretation')}), "
                        "such as a screenshot or secondary capture, is not HU; expected the "
                        "original CT series")
    for ds in datasets:
        if "LOCALIZER" in [str(v).upper() for v in ds.get("ImageType", [])]:
            what = "a localizer (scout) image" if len(datasets) == 1 else \
                f"slice {_where(ds)} is a localizer (scout) image"
            raise ReadError(f"{where}: {what}, not part of a CT volume; expected the axial "
                            "series only (move the localizer out of the folder)")


def _order_slices(datasets: list, where: Path) -> list:
    """The slices sorted along the normal, after the duplicate, gap, spacing and tilt checks."""
    missing = [d for d in datasets if "ImagePositionPatient" not in d
               or "ImageOrientationPatient" not in d]
    if missing:
        raise ReadError(f"{where}: slice {_where(missing[0])} has no ImagePositionPatient / "
                        "ImageOrientationPatient; expected the patient geometry of every slice")
    orientation = np.asarray(datasets[0].ImageOrientationPatient, float)
    for ds in datasets[1:]:
        if not np.allclose(np.asarray(ds.ImageOrientationPatient, float), orientation,
                           atol=1e-3):
            raise ReadError(f"{where}: slice {_where(ds)} has ImageOrientationPatient "
                            f"{[float(v) for v in ds.ImageOrientationPatient]} where "
                            f"{_where(datasets[0])} has {orientation.tolist()}; expected one "
                            "orientation in a series (a localizer or a reformat mixed in?)")
    first = datasets[0]
    size = (int(first.Rows), int(first.Columns))
    spacing = [float(v) for v in first.get("PixelSpacing", [1.0, 1.0])]
    for ds in datasets[1:]:
        other = [float(v) for v in ds.get("PixelSpacing", [1.0, 1.0])]
        if (int(ds.Rows), int(ds.Columns)) != size or not np.allclose(other, spacing, atol=1e-4):
            raise ReadError(
                f"{where}: slice {_where(ds)} is {ds.Rows}x{ds.Columns} pixels of {other} mm "
                f"where {_where(first)} is {size[0]}x{size[1]} of {spacing} mm; expected one "
                "image size and pixel spacing in a series (a reformat or a localizer mixed in?)")
    normal = np.cross(orientation[:3], orientation[3:])
    positions = np.asarray([ds.ImagePositionPatient for ds in datasets], float)
    order = np.argsort(positions @ normal, kind="stable")
    datasets = [datasets[i] for i in order]
    positions = positions[order]
    along = positions @ normal
    steps = np.diff(along)
    duplicate = np.flatnonzero(steps < DUPLICATE_MM)
    if duplicate.size:
        i = int(duplicate[0])
        raise ReadError(f"{where}: slices {_where(datasets[i])} and {_where(datasets[i + 1])} are "
                        f"at one position ({along[i]:.2f} mm along the slice normal); expected "
                        "each position once: remove the duplicate (another copy or encoding of "
                        "one slice)")
    step = float(np.median(steps))
    tolerance = max(SPACING_TOLERANCE * step, SPACING_TOLERANCE_MM)
    irregular = np.flatnonzero(np.abs(steps - step) > tolerance)
    if irregular.size:
        i = int(irregular[0])
        kind = "a gap" if steps[i] > step else "a step"
        raise ReadError(
            f"{where}: {kind} of {steps[i]:.2f} mm between slices {_where(datasets[i])} at "
            f"{along[i]:.2f} mm and {_where(datasets[i + 1])} at {along[i + 1]:.2f} mm where "
            f"the series steps {step:.2f} mm ({irregular.size} irregular step"
            f"{'s' * (irregular.size != 1)} of {len(steps)}); expected evenly spaced slices: "
            "missing, extra or variable-thickness slices cannot be stacked")
    span = positions[-1] - positions[0]
    drift = float(np.linalg.norm(span - (span @ normal) * normal))
    pixel = min(float(v) for v in datasets[0].get("PixelSpacing", [1.0, 1.0]))
    if drift > 0.5 * pixel:
        angle = float(np.degrees(np.arctan2(drift, span @ normal)))
        raise ReadError(f"{where}: slices are not stacked along their normal (gantry tilt "
                        f"{angle:.2f} degrees, {drift:.1f} mm in-plane shift from first to last "
                        "slice); expected an untilted series: resample it onto an axial grid "
                        "first (dcm2niix does)")
    return datasets


def _frame_of_reference(datasets: Sequence) -> list:
    """The datasets, each with a FrameOfReferenceUID.

    highdicom places an image in the patient coordinate system only when it has one; the
    geometry itself comes from position and orientation, so a file that lacks the UID (anonymised
    or hand-made files often do) gets one derived from its series.
    """
    from pydicom.uid import generate_uid

    for ds in datasets:
        if "FrameOfReferenceUID" not in ds:
            ds.FrameOfReferenceUID = generate_uid(
                entropy_srcs=[str(ds.get("SeriesInstanceUID", ds.filename))])
    return list(datasets)


def _as_volume(volume, where: Path, warnings: list[str]) -> Volume:
    """A highdicom volume (``[slice, row, column]``, LPS) as ``[column, row, slice]`` in RAS,
    with the slice axis running along row x column (as a NIfTI converter writes it)."""
    volume = volume.ensure_handedness("LEFT_HANDED", flip_axis=0).permute_spatial_axes([2, 1, 0])
    array = np.ascontiguousarray(volume.array, dtype=np.float32)
    if array.ndim != 3 or min(array.shape) < 2:
        raise ReadError(f"{where}: a 2D image (shape {list(array.shape)}); expected a 3D CT "
                        "volume: give the folder of the whole series")
    return Volume(array, LPS_TO_RAS @ np.asarray(volume.affine, float), warnings, "CT")


def _build(build, where: Path) -> object:
    """Run a highdicom volume builder; decoder, rescale and geometry errors become ReadError."""
    try:
        return build()
    except ReadError:
        raise
    except (RuntimeError, ValueError, NotImplementedError, AttributeError) as error:
        text = _line(error)
        if "Unable to decompress" in text or "plugins are missing" in text:
            raise ReadError(f"{where}: compressed pixel data that no installed decoder reads "
                            f"({text}); install the package named there (calcinet declares "
                            "pylibjpeg-libjpeg, pylibjpeg-openjpeg, pylibjpeg-rle and pyjpegls)"
                            ) from None
        if "modality LUT" in text:
            raise ReadError(f"{where}: no RescaleSlope / RescaleIntercept, so the stored values "
                            "cannot be turned into HU; expected a CT image with its rescale"
                            ) from None
        if "pixel data" in text.lower() or "bytes" in text.lower():
            raise ReadError(f"{where}: pixel data that cannot be read ({text}); expected "
                            "complete files: was one truncated while copying?") from None
        raise ReadError(f"{where}: cannot be stacked into a volume ({text}); expected one "
                        "evenly spaced CT series") from None


def read_dicom(path: Path) -> Volume:
    """A DICOM series folder, a DICOMDIR (file or the folder holding it) or an Enhanced CT file,
    as a :class:`Volume` in HU with its voxel-to-RAS affine.

    Raises:
        ReadError: one of the refusals listed in the module's docstring.
    """
    import highdicom

    path = Path(path)
    where, files = _series_files(path)
    datasets, unreadable = _read_headers(files, strict=path.is_file())
    if not datasets:
        if path.is_dir() and any(p.is_dir() for p in path.iterdir()):
            raise ReadError(f"{path}: no DICOM image directly in the folder (only in its "
                            "sub-folders) and no DICOMDIR; expected the folder of one series")
        detail = f": {unreadable[0]}" if unreadable else ""
        raise ReadError(f"{path}: no DICOM image{detail}; expected a CT series folder, a "
                        "DICOMDIR or an Enhanced CT file")
    series: dict[str, list] = defaultdict(list)
    for ds in datasets:
        series[str(ds.get("SeriesInstanceUID", ""))].append(ds)
    if len(series) > 1:
        listed = "; ".join(
            f"{uid or '(no UID)'}: {len(group)} file{'s' * (len(group) != 1)}"
            + (f" '{group[0].SeriesDescription}'" if group[0].get("SeriesDescription") else "")
            for uid, group in series.items())
        raise ReadError(f"{where}: {len(series)} DICOM series in one folder ({listed}); expected "
                        "one series per folder: move each series to a folder of its own")
    datasets = next(iter(series.values()))
    _check_kind(datasets, where)
    options = {"dtype": np.float32, "apply_real_world_transform": False,
               "apply_modality_transform": True}
    multi_frame = [ds for ds in datasets if int(ds.get("NumberOfFrames", 1) or 1) > 1]
    if multi_frame:
        if len(datasets) > 1:
            raise ReadError(f"{where}: {len(datasets)} objects in one series, "
                            f"{len(multi_frame)} of them multi-frame; expected one Enhanced CT "
                            "file, or a folder of single-frame slices")
        (ds,) = _frame_of_reference(datasets)
        volume = _build(lambda: highdicom.Image.from_dataset(ds, copy=False).get_volume(
            rtol=SPACING_TOLERANCE, **options), where)
        return _as_volume(volume, where, [])
    if len(datasets) == 1:
        raise ReadError(f"{datasets[0].filename}: a single 2D slice (one image of series "
                        f"{datasets[0].get('SeriesInstanceUID', '?')}); expected a 3D volume: "
                        "give the folder holding every slice of the series")
    ordered = _order_slices(datasets, where)
    full = _frame_of_reference(ordered)
    step = float(np.median(np.diff(np.asarray(
        [ds.ImagePositionPatient for ds in ordered], float) @ np.cross(
        *np.asarray(ordered[0].ImageOrientationPatient, float).reshape(2, 3)))))
    tolerance = max(SPACING_TOLERANCE * step, SPACING_TOLERANCE_MM)
    volume = _build(lambda: highdicom.get_volume_from_series(full, atol=tolerance, **options),
                    where)
    return _as_volume(volume, where, [])
