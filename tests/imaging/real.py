"""The real CT files of ``../shared/fixtures/real/`` and the odd cases derived from them.

The files are read where they lie (never copied into the repository); derived cases are written
into a test's temporary folder. Every expected position is computed here from the file headers
(pydicom / pynrrd / nibabel), independently of :mod:`calcinet.imaging`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

REPO = Path(__file__).resolve().parents[2]
REAL = Path(os.environ.get("CALCINET_REAL_FIXTURES", REPO.parent / "shared" / "fixtures" / "real"))
AXIAL = REAL / "dicom" / "axial_series"
GAP = REAL / "dicom" / "gap_series"
COLOUR = REAL / "dicom" / "secondary_capture_duplicate"
ENCODINGS = REAL / "dicom" / "encodings"
ENHANCED = REAL / "dicom" / "enhanced_ct"
SLICE = REAL / "dicom" / "CT_small.dcm"
LUNG = REAL / "nrrd" / "lung1_image.nrrd"
LUNG_MASK = REAL / "nrrd" / "lung1_label.nrrd"
#: The nodule of lung1, as the fixtures' README measured it (pynrrd / SimpleITK).
NODULE_VOXEL = (217.67, 358.51, 33.2)
NODULE_LPS = (-21.86, -120.54, -611.5)
NODULE_VOXELS = 837
#: HU written into derived images at a marker: far above anything else in these scans.
MARKER_HU = 3000.0


def real(path: Path) -> Path:
    """``path`` under the fixtures folder, or a failure saying where the fixtures are expected."""
    if not path.exists():
        pytest.fail(f"real CT fixture {path} is missing: the tests read ../shared/fixtures/real/ "
                    "beside the repository (or $CALCINET_REAL_FIXTURES)")
    return path


# --- DICOM: the axial series and what can go wrong with it ---------------------------------------

def axial_slices() -> list[pydicom.Dataset]:
    """The 28 image files of the axial series with their pixel data, in slice-position order."""
    slices = [pydicom.dcmread(p) for p in sorted(real(AXIAL).iterdir()) if p.name != "DIRFILE"]
    return sorted(slices, key=lambda ds: float(ds.ImagePositionPatient[2]))


def write_slices(folder: Path, slices: list[pydicom.Dataset], names: list[str] | None = None
                 ) -> Path:
    """Each dataset into its own file of ``folder`` (named ``names`` or ``S0001`` ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, ds in enumerate(slices):
        ds.save_as(folder / (names[i] if names else f"S{i + 1:04d}"), enforce_file_format=True)
    return folder


def put_marker(ds: pydicom.Dataset, row: int, column: int, hu: float = MARKER_HU) -> None:
    """A 3x3 block of ``hu`` around ``(row, column)`` of one slice (stored through the rescale)."""
    stored = ds.pixel_array.copy()
    value = round((hu - float(ds.RescaleIntercept)) / float(ds.RescaleSlope))
    stored[row - 1:row + 2, column - 1:column + 2] = value
    ds.PixelData = stored.astype(stored.dtype).tobytes()


def marker_lps(ds: pydicom.Dataset, row: int, column: int) -> np.ndarray:
    """LPS mm of pixel ``(row, column)`` of a slice, from its own header (DICOM PS3.3 C.7.6.2)."""
    orientation = np.asarray(ds.ImageOrientationPatient, float)
    row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
    return (np.asarray(ds.ImagePositionPatient, float) + column * column_spacing * orientation[:3]
            + row * row_spacing * orientation[3:])


MARKER = {"slice": 13, "row": 240, "column": 300}


def axial_case(folder: Path, name: str) -> tuple[Path, np.ndarray | None]:
    """A derived copy of the axial series: ``(folder, marker LPS or None)``.

    Readable: ``marked`` (a marker, files named by position), ``reversed`` (InstanceNumber
    against the position), ``interleaved`` (odd positions numbered first, files shuffled),
    ``no_rescale`` (stored values saved as HU: intercept 0). Refused: ``removed`` (one slice
    taken out), ``duplicated`` (one slice twice), ``two_series`` (a second series mixed in),
    ``tilted`` (gantry tilt), ``varying`` (one slice moved by 1 mm).
    """
    slices = axial_slices()
    k, r, c = MARKER["slice"], MARKER["row"], MARKER["column"]
    put_marker(slices[k], r, c)
    lps = marker_lps(slices[k], r, c)
    n = len(slices)
    names = None
    if name == "reversed":
        for i, ds in enumerate(slices):
            ds.InstanceNumber = n - i
    elif name == "interleaved":
        order = list(range(0, n, 2)) + list(range(1, n, 2))
        for number, i in enumerate(order, start=1):
            slices[i].InstanceNumber = number
        names = [f"IM{(i * 7919) % 997:04d}" for i in range(n)]
    elif name == "no_rescale":
        for ds in slices:
            ds.RescaleIntercept = 0
        lps = None  # the marker's value no longer means 3000 HU
    elif name == "removed":
        del slices[n // 2]
    elif name == "duplicated":
        copy = pydicom.dcmread(slices[10].filename)
        copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        slices.append(copy)
    elif name == "two_series":
        other = generate_uid()
        for ds in slices[:3]:
            copy = pydicom.dcmread(ds.filename)
            copy.SeriesInstanceUID = other
            copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            slices.append(copy)
    elif name == "tilted":
        for i, ds in enumerate(slices):  # 5 degrees: each 5 mm slice shifts 0.44 mm along y
            position = [float(v) for v in ds.ImagePositionPatient]
            ds.ImagePositionPatient = [position[0], position[1] + i * 5 * np.tan(np.radians(5)),
                                       position[2]]
    elif name == "varying":
        position = [float(v) for v in slices[8].ImagePositionPatient]
        slices[8].ImagePositionPatient = [position[0], position[1], position[2] + 1.0]
    elif name != "marked":
        raise ValueError(name)
    return write_slices(folder / name, slices, names), lps


# --- NRRD: the lung CT in other headers ----------------------------------------------------------

def lung_marked(folder: Path, space: str | None = "left-posterior-superior",
                spacing: tuple[float, float, float] | None = None,
                crop: tuple[slice, slice, slice] | None = None) -> tuple[Path, np.ndarray]:
    """lung1 with a marker at the nodule, written as NRRD in ``space`` (None: no ``space``
    field), optionally cropped and relabelled with another voxel size; returns the file and the
    marker's LPS mm computed from the written header."""
    import nrrd

    data, header = nrrd.read(str(real(LUNG)), index_order="F")
    data = data.astype(np.int16)
    marker = np.array([217, 358, 33])
    data[marker[0] - 1:marker[0] + 2, marker[1] - 1:marker[1] + 2, marker[2]] = MARKER_HU
    directions = np.asarray(header["space directions"], float)  # rows: the step of each axis
    origin = np.asarray(header["space origin"], float)
    if crop is not None:
        origin = origin + np.array([s.start or 0 for s in crop]) @ directions
        marker = marker - np.array([s.start or 0 for s in crop])
        data = data[crop]
    if spacing is not None:
        directions = np.diag(spacing).astype(float)
    lps = origin + marker @ directions
    out = dict(header)
    out.pop("sizes", None)
    flip = {"left-posterior-superior": (1, 1, 1), None: (1, 1, 1),
            "left-anterior-superior": (1, -1, 1), "right-anterior-superior": (-1, -1, 1)}[space]
    out["space directions"] = directions * np.asarray(flip)
    out["space origin"] = origin * np.asarray(flip)
    if space is None:
        out.pop("space")
    else:
        out["space"] = space
    path = folder / f"lung_{space or 'nospace'}_{'x'.join(map(str, spacing or ()))}.nrrd"
    folder.mkdir(parents=True, exist_ok=True)
    nrrd.write(str(path), data, out, index_order="F")
    return path, lps


def nifti_marked(folder: Path, spacing: tuple[float, float, float],
                 flips: tuple[int, int, int] = (1, 1, 1), marker: bool = True
                 ) -> tuple[Path, np.ndarray]:
    """A block of lung1 (real CT values) with a marker (or without: ``marker=False``), as NIfTI
    with voxel size ``spacing`` and axes flipped by ``flips``; returns the file and the marker's
    RAS mm from the written header (nibabel)."""
    import nibabel as nib
    import nrrd

    data, _ = nrrd.read(str(real(LUNG)), index_order="F")
    block = np.ascontiguousarray(data[150:290, 290:430, 10:48], dtype=np.float32)
    point = np.array([67, 68, 23])
    if marker:  # 5 voxels wide, so that the coarsest patch grid cannot step over it
        block[tuple(slice(p - 2, p + 3) for p in point)] = MARKER_HU
    affine = np.diag([*(s * f for s, f in zip(spacing, flips, strict=True)), 1.0])
    affine[:3, 3] = [-30.0, 12.5, -200.0]
    name = f"block_{'x'.join(map(str, spacing))}_{''.join(map(str, flips))}_{int(marker)}.nii.gz"
    path = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(block, affine)
    nib.save(image, str(path))
    header_affine = nib.load(str(path)).affine
    return path, (header_affine @ np.append(point, 1.0))[:3]


def marker_voxel(marked: np.ndarray, plain: np.ndarray) -> np.ndarray:
    """Patch voxel coordinates of the marker: the centroid of ``marked - plain`` (the same patch
    cut from the image without the marker), which interpolation leaves exactly the marker's."""
    weight = np.clip(np.asarray(marked, float) - np.asarray(plain, float), 0.0, None)
    grid = np.indices(weight.shape).reshape(3, -1)
    return (grid * weight.reshape(-1)).sum(axis=1) / weight.sum()


CaseBuilder = Callable[[Path], tuple[Path, np.ndarray | None]]
