"""Reading and geometry: one implementation for training, evaluation, export and inference.

``read_volume(path)`` reads a NIfTI, NRRD, NumPy or DICOM input as a :class:`Volume` (HU,
voxel-to-RAS affine); ``cut_patch(volume, patch_size, spacing, center)`` cuts the model's input
from it; ``mask_findings`` turns a label map into findings; ``hu_quantiles`` and the checks of
:mod:`calcinet.imaging.intensity` tell whether an image is CT in HU. Only numpy, torch and the
image readers (nibabel, pynrrd, pydicom; scipy for masks) are imported, never Lightning, Hydra,
MLflow or MONAI, so an exported model's consumer needs nothing else (a test enforces it).
"""

from calcinet.imaging.geometry import (
    AIR_HU,
    COORD_SPACES,
    LPS_TO_RAS,
    GeometryError,
    check_space,
    image_format,
    pad_value_hu,
    to_voxel,
    to_world,
)
from calcinet.imaging.intensity import (
    QUANTILE_LEVELS,
    hu_quantiles,
    intensity_problems,
    intensity_profile,
    intensity_warnings,
    non_finite_problem,
    profile_warnings,
)
from calcinet.imaging.masks import MaskError, MaskFinding, mask_findings, same_grid
from calcinet.imaging.patches import Patch, PatchError, cut_patch
from calcinet.imaging.readers import ReadError, Volume, read_volume

__all__ = [
    "AIR_HU",
    "COORD_SPACES",
    "LPS_TO_RAS",
    "QUANTILE_LEVELS",
    "GeometryError",
    "MaskError",
    "MaskFinding",
    "Patch",
    "PatchError",
    "ReadError",
    "Volume",
    "check_space",
    "cut_patch",
    "hu_quantiles",
    "image_format",
    "intensity_problems",
    "non_finite_problem",
    "intensity_profile",
    "intensity_warnings",
    "mask_findings",
    "pad_value_hu",
    "profile_warnings",
    "read_volume",
    "same_grid",
    "to_voxel",
    "to_world",
]
