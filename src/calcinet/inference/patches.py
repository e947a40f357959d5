"""Cut the model's input patch out of a volume: orient to RAS, resample, crop or pad (in HU).

This follows the training chain (MONAI ``Orientation`` -> ``Spacing`` -> ``ResizeWithPadOrCrop``,
see :mod:`calcinet.data.transforms`) but resamples only the voxels of the patch, so a whole CT
scan costs no more than a patch:

1. reorient the voxel axes to RAS (axis permutations and flips only, no interpolation);
2. the resampled grid has the model's spacing and starts at voxel 0 (its centre);
3. the patch is ``patch_size`` voxels of that grid: around ``center`` (rounded to the nearest
   grid voxel; the patch starts ``size // 2`` voxels before it, as MONAI's ``SpatialCrop``), or,
   with no centre, the central crop / symmetric pad of the whole grid (as ``ResizeWithPadOrCrop``);
4. values come from trilinear interpolation; outside the scan they are ``pad_value`` HU.

When the file is already RAS at the model's spacing, the patch is an exact copy of its voxels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from nibabel.orientations import (
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)

from calcinet.inference.readers import Volume

CoordSpace = Literal["world", "voxel", "lps"]
COORD_SPACES: tuple[str, ...] = ("world", "voxel", "lps")


class PatchError(ValueError):
    """A centre that cannot be used (outside the scan, wrong space); the message names it."""


def to_ras(volume: Volume) -> Volume:
    """The same volume with its voxel axes permuted/flipped to RAS (no interpolation)."""
    transform = ornt_transform(io_orientation(volume.affine), axcodes2ornt("RAS"))
    array = apply_orientation(volume.array, transform)
    affine = volume.affine @ inv_ornt_aff(transform, volume.array.shape)
    return Volume(np.ascontiguousarray(array, dtype=np.float32), affine)


def world_center(volume: Volume, center: Sequence[float], coord_space: str) -> np.ndarray:
    """``center`` as a RAS world point (mm); ``voxel`` indices refer to the file's own axes."""
    point = np.asarray([float(c) for c in center], float)
    if coord_space == "world":
        return point
    if coord_space == "lps":  # DICOM patient coordinates
        return point * np.array([-1.0, -1.0, 1.0])
    if coord_space == "voxel":
        return (volume.affine @ np.append(point, 1.0))[:3]
    raise PatchError(f"coord_space={coord_space!r}: expected one of {', '.join(COORD_SPACES)}")


def _linear_axis(
    values: torch.Tensor, axis: int, positions: np.ndarray, pad_value: float
) -> torch.Tensor:
    """Linear interpolation of ``values`` along ``axis`` at fractional ``positions``.

    Outside ``[0, n-1]`` a sample is ``pad_value``; a weight of exactly 0 leaves the voxel value
    untouched, so whole-voxel positions copy the data bit for bit.
    """
    n = values.shape[axis]
    low = np.floor(positions).astype(np.int64)
    weight = positions - low
    shape = [1, 1, 1]
    shape[axis] = len(positions)

    def take(index: np.ndarray) -> torch.Tensor:
        picked = values.index_select(axis, torch.from_numpy(np.clip(index, 0, n - 1)))
        inside = torch.from_numpy((index >= 0) & (index < n)).reshape(shape)
        return torch.where(inside, picked, torch.tensor(pad_value, dtype=values.dtype))

    result = take(low)
    if np.any(weight > 0):
        w = torch.from_numpy(weight.astype(np.float32)).reshape(shape)
        result = result * (1 - w) + take(low + 1) * w
    return result


def cut_patch(
    volume: Volume,
    patch_size: Sequence[int],
    spacing: Sequence[float],
    center: Sequence[float] | None = None,
    coord_space: str = "world",
    pad_value: float = -1000.0,
) -> torch.Tensor:
    """The ``[1, X, Y, Z]`` HU patch (RAS, ``spacing`` mm) the model takes, as described above."""
    target = world_center(volume, center, coord_space) if center is not None else None
    ras = to_ras(volume)
    shape = np.asarray(ras.array.shape)
    size = np.asarray([int(s) for s in patch_size])
    old_spacing = np.linalg.norm(ras.affine[:3, :3], axis=0)
    step = np.asarray([float(s) for s in spacing]) / old_spacing  # source voxels per grid voxel
    grid_shape = np.maximum(1, np.round(shape / step).astype(np.int64))
    if target is None:
        start = np.where(
            grid_shape >= size, grid_shape // 2 - size // 2, -((size - grid_shape) // 2)
        )
    else:
        source = (np.linalg.inv(ras.affine) @ np.append(target, 1.0))[:3]
        if np.any(source < -0.5) or np.any(source > shape - 0.5):
            raise PatchError(
                f"center {[float(c) for c in center]} ({coord_space}) lies outside the image "
                f"(RAS voxel {np.round(source, 1).tolist()}, image size {shape.tolist()}); "
                "check --coord-space and the axis order x,y,z"
            )
        start = np.floor(source / step + 0.5).astype(np.int64) - size // 2
    values = torch.from_numpy(ras.array)
    positions = [(start[a] + np.arange(size[a])) * step[a] for a in range(3)]
    # Work on the part of the volume the patch touches, then interpolate one axis at a time.
    first = [max(0, int(np.floor(p.min()))) for p in positions]
    last = [min(n - 1, int(np.floor(p.max())) + 1) for p, n in zip(positions, shape, strict=True)]
    if all(a <= b for a, b in zip(first, last, strict=True)):
        values = values[first[0] : last[0] + 1, first[1] : last[1] + 1, first[2] : last[2] + 1]
        positions = [p - f for p, f in zip(positions, first, strict=True)]
    else:  # the patch misses the image entirely
        return torch.full((1, *size.tolist()), float(pad_value), dtype=torch.float32)
    for axis in range(3):
        values = _linear_axis(values, axis, positions[axis], float(pad_value))
    return values.unsqueeze(0).contiguous()
