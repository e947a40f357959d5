"""Cutting the model's patch: exact copies on the model's grid, RAS, resampling, padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Orientation, ResizeWithPadOrCrop, Spacing

from calcinet.imaging import PatchError, Volume, cut_patch
from tests.inference.files import phantom_volume


def _volume(shape, spacing=(1.5, 1.5, 1.5), origin=(0.0, 0.0, 0.0), flip=(1, 1, 1)) -> Volume:
    affine = np.diag([*(s * f for s, f in zip(spacing, flip, strict=True)), 1.0])
    affine[:3, 3] = origin
    return Volume(phantom_volume(shape), affine)


@pytest.mark.parametrize("size", [(8, 8, 8), (7, 6, 5)])
def test_centre_in_voxels_or_world_copies_the_voxels(size) -> None:
    volume = _volume((20, 18, 16), origin=(-12.0, 30.0, 4.5))
    center = (9, 7, 8)
    start = [c - s // 2 for c, s in zip(center, size, strict=True)]  # MONAI SpatialCrop
    expected = volume.array[
        start[0] : start[0] + size[0], start[1] : start[1] + size[1], start[2] : start[2] + size[2]
    ]
    by_voxel = cut_patch(volume, size, (1.5, 1.5, 1.5), center, "voxel").values
    world = (volume.affine @ np.array([*center, 1.0]))[:3]
    by_world = cut_patch(volume, size, (1.5, 1.5, 1.5), world, "world").values
    lps = world * np.array([-1, -1, 1])
    by_lps = cut_patch(volume, size, (1.5, 1.5, 1.5), lps, "lps").values
    assert by_voxel.shape == (1, *size)
    assert torch.equal(by_voxel[0], torch.from_numpy(expected))
    assert torch.equal(by_world, by_voxel) and torch.equal(by_lps, by_voxel)


def test_patch_leaving_the_scan_is_padded_with_air() -> None:
    volume = _volume((10, 10, 10))
    patch = cut_patch(volume, (8, 8, 8), (1.5, 1.5, 1.5), (1, 5, 5), "voxel",
                      pad_value=-1000.0).values
    assert torch.equal(patch[0, 3:], torch.from_numpy(volume.array[:5, 1:9, 1:9]))
    assert (patch[0, :3] == -1000.0).all()


def test_non_ras_volume_is_reoriented() -> None:
    ras = _volume((12, 10, 8))
    # The same voxels stored with x and y reversed (LPS-like axes): same world, same patch.
    las_array = ras.array[::-1, ::-1, :].copy()
    las_affine = ras.affine @ np.array([[-1, 0, 0, 11], [0, -1, 0, 9], [0, 0, 1, 0], [0, 0, 0, 1]])
    las = Volume(las_array, las_affine)
    center_world = (ras.affine @ np.array([5, 4, 4, 1.0]))[:3]
    expected = cut_patch(ras, (6, 6, 6), (1.5, 1.5, 1.5), center_world, "world").values
    assert torch.equal(cut_patch(las, (6, 6, 6), (1.5, 1.5, 1.5), center_world, "world").values,
                       expected)


def test_resampling_is_trilinear() -> None:
    # A linear ramp is reproduced exactly by linear interpolation.
    i, j, k = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in (30, 30, 30)), indexing="ij")
    ramp = Volume((3 * i + 2 * j - k).astype(np.float32), np.diag([0.75, 0.75, 0.75, 1.0]))
    patch = cut_patch(ramp, (6, 6, 6), (1.5, 1.5, 1.5), (15, 15, 15), "voxel").values[0].numpy()
    # Patch voxel 3 (size // 2) lies on the centre, source voxel 15; the 1.5 mm grid steps two
    # 0.75 mm source voxels at a time.
    s = 15 + 2 * (np.arange(6) - 3)
    expected = 3 * s[:, None, None] + 2 * s[None, :, None] - s[None, None, :]
    np.testing.assert_allclose(patch, expected, atol=1e-4)


@pytest.mark.parametrize("shape", [(10, 9, 8), (5, 7, 6)])
def test_no_centre_is_monais_centre_crop_or_pad(shape) -> None:
    volume = _volume(shape, flip=(-1, 1, 1))  # not RAS: Orientation must flip x
    size = (7, 8, 6)
    chain = Compose(
        [
            Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
            Spacing(pixdim=(1.5, 1.5, 1.5), mode="bilinear"),
            ResizeWithPadOrCrop(size, mode="constant", value=-1000.0),
        ]
    )
    image = MetaTensor(torch.from_numpy(volume.array)[None], affine=torch.from_numpy(volume.affine))
    expected = torch.as_tensor(chain(image)).float()
    assert torch.equal(cut_patch(volume, size, (1.5, 1.5, 1.5), pad_value=-1000.0).values,
                       expected)


def test_centre_outside_the_image_is_refused() -> None:
    volume = _volume((10, 10, 10))
    with pytest.raises(
        PatchError,
        match=r"centre \[50.0, 5.0, 5.0\] \(voxel\) lies outside the "
        r"image",
    ):
        cut_patch(volume, (8, 8, 8), (1.5, 1.5, 1.5), (50, 5, 5), "voxel")
    # Just past the outer face of the first voxel, and on it: the message shows the difference.
    with pytest.raises(PatchError) as caught:
        cut_patch(volume, (8, 8, 8), (1.5, 1.5, 1.5), (-0.51, 5, 5), "voxel")
    assert str(caught.value) == (
        "centre [-0.51, 5.0, 5.0] (voxel) lies outside the image (voxel [-0.51, 5.0, 5.0] of the "
        "file's 10x10x10 voxels, whose outer faces are at -0.5 and size - 0.5); check the "
        "coordinate space and the axis order x,y,z")
    cut_patch(volume, (8, 8, 8), (1.5, 1.5, 1.5), (-0.5, 5, 5), "voxel")


def test_a_voxel_covers_half_a_voxel_beyond_its_centre() -> None:
    # Three 10 mm slices centred at z = 0, 10, 20 mm: the scan covers z from -5 to 25 mm.
    volume = Volume(np.full((4, 4, 3), 100.0, np.float32), np.diag([1.0, 1.0, 10.0, 1.0]))
    patch = cut_patch(volume, (1, 1, 41), (1.0, 1.0, 1.0), (2.0, 2.0, 10.0), "world",
                      pad_value=-1000.0)
    z = (patch.affine @ np.stack([np.zeros(41), np.zeros(41), np.arange(41), np.ones(41)]))[2]
    expected = np.where((z >= -5.0) & (z <= 25.0), 100.0, -1000.0)
    np.testing.assert_array_equal(patch.values[0, 0, 0].numpy(), expected)
    assert z.min() == -10.0 and z.max() == 30.0


@pytest.mark.parametrize("spacing", [(1.5, 1.5, 1.5), (1.25, 0.8, 2.0)])
def test_a_crop_of_the_scan_gives_the_same_patch_for_the_same_finding(spacing) -> None:
    # The grid follows the finding, not the array's first voxel: the same world centre in the
    # whole scan and in crops starting 1, 2 or 3 voxels further in gives the same patch, the
    # centre itself at patch voxel size // 2.
    volume = _volume((30, 28, 26), spacing=(0.7, 0.9, 1.1), origin=(-10.0, 5.0, 2.0))
    world = np.array([0.37, 17.81, 15.06])
    whole = cut_patch(volume, (9, 8, 7), spacing, world, "world")
    np.testing.assert_allclose(whole.center_world, world, atol=1e-9)
    for offset in (1, 2, 3):
        crop = np.diag([1.0, 1.0, 1.0, 1.0])
        crop[:3, 3] = [offset, 2 * offset, offset]
        cropped = Volume(np.ascontiguousarray(volume.array[offset:, 2 * offset:, offset:]),
                         volume.affine @ crop)
        patch = cut_patch(cropped, (9, 8, 7), spacing, world, "world")
        np.testing.assert_allclose(patch.center_world, world, atol=1e-9)
        np.testing.assert_allclose(patch.values.numpy(), whole.values.numpy(), atol=1e-3)
