"""Read a CT volume in HU with its voxel-to-world affine (RAS, mm), from any supported format.

Every reader returns a :class:`Volume`: ``array[i, j, k]`` in the file's own voxel order and the
4x4 ``affine`` mapping a voxel index ``(i, j, k)`` to world RAS millimetres (nibabel's and MONAI's
convention). Formats stored in LPS (DICOM, most NRRD files) are converted to RAS here.

MONAI's readers would do the same, but ``import monai`` imports every MONAI sub-package, MLflow
included, which a consumer of an exported model must not need; nibabel, pynrrd and pydicom are
small and enough.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Suffixes read as one volume; a folder is a DICOM series or a folder of such files.
NIFTI_SUFFIXES = (".nii", ".nii.gz")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
NUMPY_SUFFIXES = (".npy",)
VOLUME_SUFFIXES = NIFTI_SUFFIXES + NRRD_SUFFIXES + NUMPY_SUFFIXES
#: Flip of x and y: DICOM's and NRRD's LPS world <-> RAS world.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class ReadError(ValueError):
    """An input that cannot be read as a CT volume; the message names the file and the reason."""


@dataclass
class Volume:
    """HU values ``array[i, j, k]`` (float32) and the voxel-to-RAS-mm ``affine`` (4x4)."""

    array: np.ndarray
    affine: np.ndarray


def has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    return path.name.lower().endswith(suffixes)


def _as_3d(array: np.ndarray, path: Path) -> np.ndarray:
    array = np.asarray(array)
    while array.ndim > 3 and array.shape[-1] == 1:  # (X, Y, Z, 1) from 4D NIfTI files
        array = array[..., 0]
    if array.ndim != 3:
        raise ReadError(f"{path}: image of shape {list(array.shape)}; expected a 3D volume")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ReadError(f"{path}: voxels of type {array.dtype}; expected real numbers (HU)")
    return np.ascontiguousarray(array, dtype=np.float32)


def read_nifti(path: Path) -> Volume:
    """NIfTI: ``get_fdata`` applies the file's scaling (scl_slope/inter); the affine is RAS."""
    import nibabel as nib

    image = nib.load(str(path))
    return Volume(_as_3d(image.get_fdata(dtype=np.float32), path), np.asarray(image.affine, float))


_NRRD_SPACES = {  # NRRD "space" -> sign flip of each world axis to reach RAS
    "right-anterior-superior": (1, 1, 1),
    "ras": (1, 1, 1),
    "left-posterior-superior": (-1, -1, 1),
    "lps": (-1, -1, 1),
    "left-anterior-superior": (-1, 1, 1),
    "las": (-1, 1, 1),
}


def read_nrrd(path: Path) -> Volume:
    """NRRD: axes in the file's order (pynrrd ``index_order="F"``); world from ``space`` fields."""
    import nrrd

    data, header = nrrd.read(str(path), index_order="F")
    array = _as_3d(data, path)
    directions = header.get("space directions")
    if directions is not None:
        directions = np.asarray(
            [d for d in directions if d is not None and not np.any(np.isnan(np.asarray(d, float)))],
            float,
        )
        if directions.shape != (3, 3):
            raise ReadError(
                f"{path}: NRRD field 'space directions'={header['space directions']!r};"
                " expected three 3D vectors"
            )
        space = str(header.get("space", "right-anterior-superior")).lower()
        if space not in _NRRD_SPACES:
            raise ReadError(
                f"{path}: NRRD field space={space!r}; expected one of "
                f"{', '.join(sorted(_NRRD_SPACES))}"
            )
        affine = np.eye(4)
        affine[:3, :3] = directions.T  # column j: the world step of voxel axis j
        affine[:3, 3] = np.asarray(header.get("space origin", np.zeros(3)), float)
        affine = np.diag([*_NRRD_SPACES[space], 1.0]) @ affine
    else:  # no world information: voxel spacing only
        spacings = np.asarray(header.get("spacings", [1.0, 1.0, 1.0]), float)[:3]
        affine = np.diag([*np.nan_to_num(spacings, nan=1.0), 1.0])
    return Volume(array, affine)


def read_numpy(path: Path, spacing: tuple[float, float, float]) -> Volume:
    """NumPy ``.npy``: HU in (x, y, z) axis order, RAS, voxel size ``spacing`` (mm), origin 0."""
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise ReadError(f"{path}: not a plain NumPy array ({error})") from None
    return Volume(_as_3d(array, path), np.diag([*map(float, spacing), 1.0]))


def is_dicom_file(path: Path) -> bool:
    """A file with the DICOM preamble (``DICM`` at byte 128) or the ``.dcm`` suffix."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_folder(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() and is_dicom_file(p) for p in folder.iterdir())


def read_dicom_series(folder: Path) -> Volume:
    """One DICOM series (a folder of single-slice files): HU via the modality LUT (rescale
    slope/intercept), slices ordered along the slice normal, affine from the patient geometry."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    series: dict[str, list] = defaultdict(list)
    for file in sorted(p for p in folder.iterdir() if p.is_file() and is_dicom_file(p)):
        try:
            ds = pydicom.dcmread(file)
        except (InvalidDicomError, OSError, ValueError) as error:
            raise ReadError(f"{file}: not a readable DICOM file ({error})") from None
        if "PixelData" in ds:  # skips DICOMDIR and other non-image objects
            series[str(ds.get("SeriesInstanceUID", ""))].append((file, ds))
    if not series:
        raise ReadError(f"{folder}: no DICOM image in the folder; expected one CT series")
    if len(series) > 1:
        raise ReadError(
            f"{folder}: {len(series)} DICOM series ({', '.join(sorted(series))}); "
            "expected one series per folder"
        )
    slices = next(iter(series.values()))
    first = slices[0][1]
    for tag in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing"):
        missing = [f.name for f, ds in slices if tag not in ds]
        if missing:
            raise ReadError(
                f"{folder}: DICOM field {tag} missing in {missing[0]}; expected the "
                "patient geometry of every slice"
            )
    orientation = np.asarray(first.ImageOrientationPatient, float)
    row_dir, col_dir = orientation[:3], orientation[3:]  # along a row (i), along a column (j)
    normal = np.cross(row_dir, col_dir)
    slices.sort(
        key=lambda item: float(np.dot(normal, np.asarray(item[1].ImagePositionPatient, float)))
    )
    positions = np.asarray([ds.ImagePositionPatient for _, ds in slices], float)
    try:
        planes = [apply_modality_lut(ds.pixel_array, ds).astype(np.float32) for _, ds in slices]
    except Exception as error:  # pixel data that pydicom cannot decode (compressed, truncated)
        raise ReadError(f"{folder}: DICOM pixel data cannot be decoded ({error})") from None
    if len({p.shape for p in planes}) != 1:
        raise ReadError(
            f"{folder}: slices of different sizes {sorted({p.shape for p in planes})};"
            " expected one series"
        )
    # pixel_array is [row, column]; the volume is [i = column, j = row, k = slice].
    array = np.ascontiguousarray(np.stack(planes, axis=-1).transpose(1, 0, 2))
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    if len(slices) > 1:
        step = (positions[-1] - positions[0]) / (len(slices) - 1)
    else:
        step = normal * float(first.get("SliceThickness", 1.0) or 1.0)
    affine = np.eye(4)
    affine[:3, 0] = row_dir * col_spacing
    affine[:3, 1] = col_dir * row_spacing
    affine[:3, 2] = step
    affine[:3, 3] = positions[0]
    return Volume(array, LPS_TO_RAS @ affine)


def read_volume(path: Path, npy_spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Volume:
    """Read ``path`` by its kind: NIfTI, NRRD, NumPy, or a DICOM series folder."""
    try:
        if path.is_dir():
            if not is_dicom_folder(path):
                raise ReadError(f"{path}: folder without DICOM files; expected a DICOM series")
            return read_dicom_series(path)
        if not path.exists():
            raise ReadError(f"{path}: no such file")
        if has_suffix(path, NIFTI_SUFFIXES):
            return read_nifti(path)
        if has_suffix(path, NRRD_SUFFIXES):
            return read_nrrd(path)
        if has_suffix(path, NUMPY_SUFFIXES):
            return read_numpy(path, npy_spacing)
    except ReadError:
        raise
    except Exception as error:  # readers raise many types for damaged files
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ReadError(f"{path}: cannot be read ({type(error).__name__}: {reason})") from None
    raise ReadError(
        f"{path}: unknown file type; expected .nii, .nii.gz, .nrrd, .nhdr, .npy, "
        "a DICOM series folder or a manifest .csv"
    )
