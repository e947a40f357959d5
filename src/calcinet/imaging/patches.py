"""Cut the model's input patch out of a volume: RAS, the model's spacing and size, in HU.

:func:`cut_patch` is the one implementation of this step; training (wrapped as a MONAI transform
in :mod:`calcinet.data.transforms`), evaluation, export checks and ``calcinet-predict`` all call
it, so a finding gives the same patch, voxel for voxel, on every path.

1. The voxel axes are matched to RAS by permutations and flips only (nibabel's
   ``io_orientation``), never by interpolation; an oblique scan is cut along its own axes, those
   nearest to R, A and S.
2. The patch is a grid of ``patch_size`` voxels with the model's spacing along those axes.
   With a ``center``, patch voxel ``size // 2`` lies on the finding itself: the grid depends on
   the finding's position only, not on where the array starts, so a scan and any crop of it
   give the same patch (and a centre on a voxel of a file already at the model's spacing gives
   an exact copy of its voxels).
3. With no centre, the grid starts at the centre of the first voxel of the RAS-ordered array
   (for an LPS file, its last voxel along x and y), has ``round(n * old / new)`` voxels along an
   axis of ``n`` voxels, and the patch is its central crop / symmetric pad (MONAI's ``Spacing``
   then ``ResizeWithPadOrCrop``).
4. Values come from trilinear interpolation. A voxel stands for the slab half a voxel either side
   of its centre, so within half a voxel beyond the outermost centres a value is the outermost
   voxel's; further out it is ``pad_value`` HU.

Only the voxels the patch touches are read and interpolated, so a whole CT scan costs no more
than a patch, and a file already in RAS at the model's spacing gives an exact copy of its voxels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from nibabel.orientations import axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from calcinet.imaging.geometry import AIR_HU, to_world, voxel_sizes
from calcinet.imaging.readers import Volume


class PatchError(ValueError):
    """A centre that cannot be used (outside the scan); the message names it and the fix."""


@dataclass(frozen=True)
class Patch:
    """``values``: ``[1, X, Y, Z]`` float32 HU in RAS at the model's spacing; ``affine``: patch
    voxel -> RAS mm (its centre voxel ``size // 2`` is where the finding was placed)."""

    values: torch.Tensor
    affine: np.ndarray

    @property
    def center_world(self) -> np.ndarray:
        """RAS mm of patch voxel ``size // 2`` (on each axis): the finding, when a centre was
        given; the middle of the volume's resampled grid otherwise."""
        middle = np.asarray(self.values.shape[1:]) // 2
        return (self.affine @ np.append(middle, 1.0))[:3]


def _linear_axis(values: np.ndarray, axis: int, positions: np.ndarray, pad_value: float
                 ) -> np.ndarray:
    """Linear interpolation of ``values`` along ``axis`` at fractional ``positions``.

    Within half a voxel outside ``[0, n-1]`` a sample is the edge voxel's value (the voxel's own
    slab), further out ``pad_value``; a weight of exactly 0 leaves the voxel value untouched, so
    whole-voxel positions copy the data bit for bit.

    NumPy, single-threaded on purpose: a patch is a few hundred thousand voxels, too small for
    torch's intra-op threads to pay off, and when the other cores are busy (data-loader workers,
    ``calcinet-predict`` reading while the model runs, a shared machine) those threads wait on
    each other: 40x slower measured on 2 busy cores (3.8 ms single-threaded, 150 ms with two
    torch threads for a 64^3 -> 48^3 patch).
    """
    n = values.shape[axis]
    covered = (positions >= -0.5) & (positions <= n - 0.5)
    positions = np.clip(positions, 0, n - 1)
    low = np.floor(positions).astype(np.int64)
    weight = np.where(covered, positions - low, 0.0)
    shape = [1, 1, 1]
    shape[axis] = len(positions)
    # ``a * (1 - w) + b * w`` in float32, computed in place (no temporaries per term).
    result = np.take(values, low, axis=axis)
    if not covered.all():
        index: list[slice | np.ndarray] = [slice(None)] * 3
        index[axis] = ~covered
        result[tuple(index)] = pad_value
    if np.any(weight > 0):
        w = weight.astype(np.float32).reshape(shape)
        following = np.take(values, np.minimum(low + 1, n - 1), axis=axis)
        with np.errstate(invalid="ignore"):  # inf * 0: NaN, as the arithmetic says
            result *= 1 - w
            following *= w
            result += following
    return result


def cut_patch(
    volume: Volume,
    patch_size: Sequence[int],
    spacing: Sequence[float],
    center: Sequence[float] | None = None,
    coord_space: str = "world",
    pad_value: float = AIR_HU,
) -> Patch:
    """The ``[1, X, Y, Z]`` HU patch (RAS, ``spacing`` mm) the model takes, as described above.

    Args:
        volume: the scan (or a patch file) with its voxel-to-RAS affine.
        patch_size: ``(X, Y, Z)`` voxels; spacing: ``(x, y, z)`` mm.
        center: the finding, in ``coord_space`` (``world`` RAS mm, ``lps`` mm, or ``voxel``
            indices of the file's own axes); None: the middle of the volume.
        pad_value: HU of voxels outside the scan.

    Raises:
        PatchError: the centre lies outside the scan.
    """
    size = np.asarray([int(s) for s in patch_size])
    # RAS axis a is the file's axis axis_of[a], reversed when flipped[a]; no voxel is copied.
    transform = ornt_transform(io_orientation(volume.affine), axcodes2ornt("RAS"))
    axis_of = [int(np.flatnonzero(transform[:, 0] == a)[0]) for a in range(3)]
    flipped = [bool(transform[p, 1] < 0) for p in axis_of]
    ras_affine = volume.affine @ inv_ornt_aff(transform, volume.array.shape)
    shape = np.asarray(volume.array.shape)[axis_of]
    step = np.asarray([float(s) for s in spacing]) / voxel_sizes(ras_affine)
    if center is None:
        grid_shape = np.maximum(1, np.round(shape / step).astype(np.int64))
        start = np.where(grid_shape >= size, grid_shape // 2 - size // 2,
                         -((size - grid_shape) // 2))
    else:
        world = to_world(center, coord_space, volume.affine)
        source = (np.linalg.inv(ras_affine) @ np.append(world, 1.0))[:3]
        if np.any(source < -0.5) or np.any(source > shape - 0.5):
            voxel = (np.linalg.inv(volume.affine) @ np.append(world, 1.0))[:3]
            raise PatchError(
                f"centre {[float(c) for c in center]} ({coord_space}) lies outside the image "
                f"(voxel {np.round(voxel, 2).tolist()} of the file's "
                f"{'x'.join(map(str, volume.shape))} voxels, whose outer faces are at -0.5 and "
                "size - 0.5); check the coordinate space and the axis order x,y,z")
        # Fractional: patch voxel ``size // 2`` lies on the finding itself, whatever the crop.
        start = source / step - size // 2
    grid = np.eye(4)
    grid[:3, :3] = np.diag(step)
    grid[:3, 3] = start * step
    affine = ras_affine @ grid

    # Sample positions along the file's own axes.
    positions: list[np.ndarray] = [np.empty(0)] * 3
    for a, p in enumerate(axis_of):
        along = (start[a] + np.arange(size[a])) * step[a]
        positions[p] = (volume.array.shape[p] - 1) - along if flipped[a] else along
    first = [max(0, int(np.floor(q.min()))) for q in positions]
    last = [min(n - 1, int(np.floor(q.max())) + 1)
            for q, n in zip(positions, volume.array.shape, strict=True)]
    if not all(a <= b for a, b in zip(first, last, strict=True)):  # the patch misses the scan
        return Patch(torch.full((1, *size.tolist()), float(pad_value), dtype=torch.float32),
                     affine)
    values = np.asarray(volume.array[first[0]:last[0] + 1, first[1]:last[1] + 1,
                                     first[2]:last[2] + 1])
    # The passes run over the array's memory from its outermost axis in (a NIfTI's Fortran-
    # ordered voxels as their C-ordered transpose), so that np.take copies whole rows: against
    # the file's axis order, 2x the time on a Fortran-ordered 64^3 -> 48^3 patch.
    order = sorted(range(3), key=lambda p: -values.strides[p])
    values = values.transpose(order)
    for i, p in enumerate(order):
        values = _linear_axis(values, i, positions[p] - first[p], float(pad_value))
    values = values.transpose([order.index(p) for p in axis_of])  # to RAS
    values = np.ascontiguousarray(values[None], dtype=np.float32)
    return Patch(torch.from_numpy(values), affine)
