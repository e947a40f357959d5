"""Writers of tiny images in every manifest format, each with a known affine."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: A RAS affine with permuted, flipped and anisotropic axes: voxel i runs to the left
#: (-x, 0.8 mm), voxel j upwards (+z, 2.0 mm), voxel k to the back (-y, 1.2 mm).
ODD_AFFINE = np.array([
    [-0.8, 0.0, 0.0, 12.0],
    [0.0, 0.0, -1.2, 30.0],
    [0.0, 2.0, 0.0, -40.0],
    [0.0, 0.0, 0.0, 1.0],
])


def smooth_volume(shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """A float32 HU volume with a distinct value at every voxel (a tilted ramp plus noise), so
    any flip or transposition shows."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    ramp = -800 + 37.0 * grid[0] + 11.0 * grid[1] + 3.0 * grid[2]
    return (ramp + rng.normal(0, 5, shape)).astype(np.float32)


def write_nifti(path: Path, volume: np.ndarray, affine: np.ndarray = ODD_AFFINE) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(volume, affine), str(path))
    return path


def write_nrrd(path: Path, volume: np.ndarray, affine: np.ndarray = ODD_AFFINE) -> Path:
    """NRRD in its usual LPS space: the RAS affine with x and y negated."""
    import nrrd

    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    path.parent.mkdir(parents=True, exist_ok=True)
    nrrd.write(str(path), volume, {"space": "left-posterior-superior",
                                   "space directions": lps[:3, :3].T, "space origin": lps[:3, 3]})
    return path


def write_dicom_series(folder: Path, hu_xyz: np.ndarray, pixel_spacing: Sequence[float],
                       slice_spacing: float, origin: Sequence[float] = (-20.0, 15.0, 100.0),
                       slope: float = 2.0, intercept: float = -1024.0) -> Path:
    """An axial CT series (LPS, rows along +y, columns along +x) of ``hu_xyz[x, y, z]``, stored
    as ``(HU - intercept) / slope`` in uint16; slices written in reverse order, numbered by z.

    ``pixel_spacing`` is DICOM's (row spacing = y, column spacing = x).
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    stored = np.rint((hu_xyz - intercept) / slope)
    assert stored.min() >= 0 and stored.max() < 65536
    series, study = generate_uid(), generate_uid()
    for k in reversed(range(hu_xyz.shape[2])):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality, ds.PatientID = "CT", "phantom"
        ds.Rows, ds.Columns = hu_xyz.shape[1], hu_xyz.shape[0]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation, ds.SamplesPerPixel = 0, 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelSpacing = [float(pixel_spacing[0]), float(pixel_spacing[1])]
        ds.SliceThickness = float(slice_spacing)
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.ImagePositionPatient = [float(origin[0]), float(origin[1]),
                                   float(origin[2] + k * slice_spacing)]
        ds.InstanceNumber = k + 1
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T, dtype="<u2").tobytes()
        pydicom.dcmwrite(folder / f"slice{hu_xyz.shape[2] - k:03d}.dcm", ds,
                         enforce_file_format=True)
    return folder


def write_manifest(path: Path, rows: Sequence[dict], columns: Sequence[str] | None = None
                   ) -> Path:
    """A manifest CSV of ``rows`` (missing values written empty)."""
    columns = list(columns or dict.fromkeys(k for row in rows for k in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def patch_rows(folder: Path, count: int, shape: Sequence[int] = (12, 12, 12),
               patients: int | None = None) -> list[dict]:
    """``count`` small NIfTI patches, labels alternating, ``patients`` patients (default: one
    each); returns manifest rows with paths relative to ``folder``."""
    rows = []
    for i in range(count):
        write_nifti(folder / f"img{i:03d}.nii.gz", smooth_volume(shape, seed=i) + 100 * (i % 2),
                    np.diag([1.0, 1.0, 1.5, 1.0]))
        patient = i if patients is None else i % patients
        rows.append({"path": f"img{i:03d}.nii.gz", "label": ("benign", "malignant")[i % 2],
                     "patient_id": f"P{patient:03d}"})
    return rows
