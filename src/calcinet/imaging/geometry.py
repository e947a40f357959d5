"""Geometry facts shared by every reader, the patch cutter, training and inference.

Conventions (those of nibabel, MONAI and NIfTI):

- a volume is ``array[i, j, k]`` in the file's own voxel order with a 4x4 ``affine`` mapping a
  voxel index ``(i, j, k, 1)`` to *world* millimetres in **RAS** (x towards the patient's Right,
  y Anterior, z Superior);
- DICOM and most NRRD files store **LPS** millimetres (x to the Left, y Posterior): the same
  space with x and y negated (:data:`LPS_TO_RAS`);
- a point is given in one of :data:`COORD_SPACES`: ``world`` (RAS mm), ``lps`` (DICOM / ITK /
  3D Slicer patient mm) or ``voxel`` (0-based index in the file's own axis order).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: Spaces a finding's centre can be given in (manifests, ``calcinet-predict --coord-space``).
COORD_SPACES: tuple[str, ...] = ("world", "voxel", "lps")
#: DICOM's and ITK's LPS world <-> RAS world (its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: HU of air: the value of voxels a patch takes from outside the scan (see :func:`pad_value_hu`).
AIR_HU = -1000.0

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
NUMPY_SUFFIXES = (".npy",)
DICOM_SUFFIXES = (".dcm", ".dicom")
#: Files that hold one whole volume.
VOLUME_SUFFIXES = NIFTI_SUFFIXES + NRRD_SUFFIXES + NUMPY_SUFFIXES
#: What a user may give as an image, for messages.
FORMATS_TEXT = ".nii, .nii.gz, .nrrd, .nhdr, .npy, or a DICOM series folder"


class GeometryError(ValueError):
    """A point or coordinate space that cannot be used; the message names the value."""


def has_suffix(path: Path, suffixes: Sequence[str]) -> bool:
    return path.name.lower().endswith(tuple(suffixes))


def image_format(path: Path) -> str | None:
    """``"nifti"``, ``"nrrd"``, ``"npy"``, ``"dicom"`` (a folder or a DICOM file) or None."""
    if path.is_dir():
        return "dicom"
    if has_suffix(path, NIFTI_SUFFIXES):
        return "nifti"
    if has_suffix(path, NRRD_SUFFIXES):
        return "nrrd"
    if has_suffix(path, NUMPY_SUFFIXES):
        return "npy"
    if has_suffix(path, DICOM_SUFFIXES) or is_dicom_file(path):
        return "dicom"
    return None


def is_dicom_file(path: Path) -> bool:
    """A file with the DICOM Part 10 preamble (``DICM`` at byte 128)."""
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def pad_value_hu(hu_window: Sequence[float]) -> float:
    """HU written where a patch reaches outside the scan: air, or the window's low end if lower.

    Every HU at or below the window's low end is windowed to 0, so padding with air (or lower)
    gives the model exactly what a patch of air inside the scan would.
    """
    return min(AIR_HU, float(hu_window[0]))


def check_space(coord_space: str, what: str = "coord_space") -> str:
    """The lower-cased space name, or a GeometryError naming ``what`` and the value."""
    space = str(coord_space).strip().lower()
    if space not in COORD_SPACES:
        raise GeometryError(f"{what}={coord_space!r}: expected one of {', '.join(COORD_SPACES)} "
                            "(world = RAS mm, lps = DICOM patient mm, voxel = 0-based index)")
    return space


def to_world(center: Sequence[float], coord_space: str, affine: np.ndarray) -> np.ndarray:
    """``center`` as a RAS world point (mm); ``voxel`` indices go through ``affine``."""
    point = np.asarray([float(c) for c in center], float)
    space = check_space(coord_space)
    if space == "lps":
        return point * np.array([-1.0, -1.0, 1.0])
    if space == "voxel":
        return (np.asarray(affine, float) @ np.append(point, 1.0))[:3]
    return point


def to_voxel(center: Sequence[float], coord_space: str, affine: np.ndarray) -> np.ndarray:
    """``center`` as fractional voxel indices of the image with voxel-to-RAS ``affine``."""
    if check_space(coord_space) == "voxel":
        return np.asarray([float(c) for c in center], float)
    world = to_world(center, coord_space, affine)
    return (np.linalg.inv(np.asarray(affine, float)) @ np.append(world, 1.0))[:3]


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """The length (mm) of a step along each voxel axis."""
    return np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)
