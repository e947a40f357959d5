"""Findings from a segmentation: one finding per connected component of a label map.

Users often hold a mask (3D Slicer, ITK-SNAP, MONAI Label) rather than centres. Every non-zero
voxel is foreground; components are 26-connected (voxels touching by a face, an edge or a corner
belong together), labelled by ``scipy.ndimage.label`` in raster order of their first voxel (in
the mask file's own axis order), and each is centred on its centroid, in world coordinates. The
mask must cover the image's voxels (its axes may be stored flipped or permuted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from nibabel.orientations import axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from calcinet.imaging.readers import Volume

#: How far (mm) the mask's voxel grid may be from the image's and still be the same grid.
GRID_TOLERANCE_MM = 1e-3


class MaskError(ValueError):
    """A mask that cannot give findings (another grid, empty); the message says which and why."""


@dataclass(frozen=True)
class MaskFinding:
    """A connected component: its number (1-based), size, and centroid in voxels and RAS mm."""

    component: int
    voxels: int
    center_voxel: tuple[float, float, float]
    center_world: tuple[float, float, float]


def _ras_grid(shape: Sequence[int], affine: np.ndarray) -> tuple[list[int], np.ndarray]:
    """The grid's shape and affine with its axes in RAS order (permutations and flips only)."""
    transform = ornt_transform(io_orientation(affine), axcodes2ornt("RAS"))
    ras_shape = [0, 0, 0]
    for axis, (target, _) in enumerate(transform):
        ras_shape[int(target)] = int(shape[axis])
    return ras_shape, np.asarray(affine, float) @ inv_ornt_aff(transform, tuple(shape))


def same_grid(mask: Volume, shape: Sequence[int], affine: np.ndarray,
              tolerance_mm: float = GRID_TOLERANCE_MM) -> bool:
    """Whether ``mask`` covers the voxel grid ``(shape, affine)``: the same voxels in the same
    places within ``tolerance_mm`` at every corner, whatever the order and direction its own
    axes are stored in (a mask saved by another tool may flip or permute them)."""
    mask_shape, mask_affine = _ras_grid(mask.shape, mask.affine)
    image_shape, image_affine = _ras_grid(shape, affine)
    if mask_shape != image_shape:
        return False
    corners = np.array([[i, j, k, 1.0] for i in (0, mask_shape[0] - 1)
                        for j in (0, mask_shape[1] - 1) for k in (0, mask_shape[2] - 1)]).T
    difference = mask_affine @ corners - image_affine @ corners
    return bool(np.abs(difference).max() <= tolerance_mm)


def _grid_text(shape: Sequence[int], affine: np.ndarray) -> str:
    affine = np.asarray(affine, float)
    return (f"shape {list(shape)}, voxel sizes "
            f"{np.linalg.norm(affine[:3, :3], axis=0).round(4).tolist()} mm, origin "
            f"{affine[:3, 3].round(3).tolist()}")


def mask_findings(mask: Volume, grid: tuple[Sequence[int], np.ndarray] | None = None
                  ) -> list[MaskFinding]:
    """The connected components of ``mask`` as findings.

    Args:
        mask: the label map (any non-zero voxel is foreground).
        grid: ``(shape, affine)`` of the image the findings are in; the mask must lie on it.

    Raises:
        MaskError: the mask is not on ``grid``, holds values that are no labels (negative,
            fractional or not finite: a scan in HU or a probability map), or has no
            foreground voxel.
    """
    from scipy import ndimage

    if grid is not None and not same_grid(mask, *grid):
        raise MaskError(f"the mask's grid ({_grid_text(mask.shape, mask.affine)}) is not the "
                        f"image's ({_grid_text(*grid)}); expected a label map saved on the "
                        "image's grid")
    values = np.asarray(mask.array)
    unlabelled = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
    if unlabelled.any():
        example = float(values[unlabelled].flat[0])
        raise MaskError(f"{int(unlabelled.sum())} voxels hold values that are no labels (such as "
                        f"{example:g}; the mask spans {float(np.nanmin(values)):g} to "
                        f"{float(np.nanmax(values)):g}); expected a label map of whole numbers "
                        ">= 0 (0 background): is this the scan, or a probability map to "
                        "threshold first?")
    foreground = values != 0
    labels, count = ndimage.label(foreground, structure=ndimage.generate_binary_structure(3, 3))
    if count == 0:
        raise MaskError("no foreground voxel (every value is 0); expected a label map with "
                        "the findings marked")
    index = np.arange(1, count + 1)
    sizes = ndimage.sum_labels(foreground, labels, index)
    centres = ndimage.center_of_mass(foreground, labels, index)
    findings = []
    for number, size, centre in zip(index, sizes, centres, strict=True):
        world = (mask.affine @ np.append(centre, 1.0))[:3]
        findings.append(MaskFinding(int(number), int(size), tuple(float(c) for c in centre),
                                    tuple(float(c) for c in world)))
    return findings
