"""Writers of small test volumes in every input format (NIfTI, NRRD, NumPy, DICOM series)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def write_nifti(path: Path, hu: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(hu.astype(np.float32), affine), str(path))
    return path


def write_nrrd_lps(
    path: Path,
    hu: np.ndarray,
    spacing: tuple[float, float, float],
    origin_lps: tuple[float, float, float],
) -> Path:
    """``hu[i, j, k]`` with axes along +L, +P, +S (the usual LPS NRRD of a CT)."""
    header = {
        "space": "left-posterior-superior",
        "space directions": np.diag(spacing),
        "space origin": np.asarray(origin_lps, float),
    }
    nrrd.write(str(path), hu.astype(np.float32), header, index_order="F")
    return path


def write_dicom_series(
    folder: Path,
    hu: np.ndarray,
    spacing: tuple[float, float, float],
    origin_lps: tuple[float, float, float],
    slope: float = 2.0,
    intercept: float = -1024.0,
) -> Path:
    """One CT slice file per ``k``, stored as uint16 ``(hu - intercept) / slope``.

    Rows run along +P (LPS y), columns along +L (LPS x), slices along +S; files are written in
    reverse order under shuffled names so that the reader must sort by position.
    """
    folder.mkdir(parents=True, exist_ok=True)
    series, study = generate_uid(), generate_uid()
    stored = np.round((hu - intercept) / slope)
    assert stored.min() >= 0 and stored.max() < 2**16
    stored = stored.astype(np.uint16)
    columns, rows, slices = hu.shape
    for k in reversed(range(slices)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.InstanceNumber = k + 1
        ds.Rows, ds.Columns = rows, columns
        ds.PixelSpacing = [spacing[1], spacing[0]]  # row spacing (along y), column spacing (x)
        ds.SliceThickness = spacing[2]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [origin_lps[0], origin_lps[1], origin_lps[2] + k * spacing[2]]
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 0
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()  # [row, column]
        ds.save_as(folder / f"IM{(k * 7919) % 1000:04d}.dcm", enforce_file_format=True)
    return folder


def phantom_volume(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Smooth random HU (multiples of 2, so the DICOM round trip with slope 2 is exact)."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(-1000, 1500, shape)
    for axis in range(3):
        noise = (noise + np.roll(noise, 1, axis) + np.roll(noise, -1, axis)) / 3
    return (2 * np.round(noise / 2)).astype(np.float32)
