"""The growth renderer family's building blocks against hand computations: 2x2x2 block
averaging of the fine lattice, narrow-band occupancy of distance-like fields, the volume of
stamped lattice balls, and the mixing identity of the painted layers."""

from __future__ import annotations

import numpy as np
import pytest


def test_block_averaging_is_the_mean_of_each_2x2x2_block() -> None:
    from calcinet.data.phantom.growth.lattice import FineBox, Grid

    grid = Grid((16, 16, 16), (1.25, 1.25, 1.25), np.eye(3), (0, 0, 0))
    box = FineBox(grid, (1.0, -2.0, 0.5), 5.0)
    rng = np.random.default_rng(0)
    mask = rng.random(box.shape) < 0.4
    hu = rng.uniform(100, 900, box.shape).astype(np.float32)
    frac, mean_hu = box.block(mask, hu)
    nz, ny, nx = (n // 2 for n in box.shape)
    blocks = mask.reshape(nz, 2, ny, 2, nx, 2)
    np.testing.assert_allclose(frac, blocks.mean(axis=(1, 3, 5)), atol=1e-6)
    weighted = (mask * hu).reshape(nz, 2, ny, 2, nx, 2).sum(axis=(1, 3, 5))
    some = frac > 0
    np.testing.assert_allclose(mean_hu[some], weighted[some] / (8 * frac[some]), rtol=1e-5)
    # The fine lattice sits on the patch grid: 4 sub-voxel centres per patch voxel along an axis.
    assert box.axes[2][1] - box.axes[2][0] == pytest.approx(0.625)
    assert box.axes[2][0] + 0.3125 == pytest.approx(grid.axes[2][box.slices[2].start])


def test_narrow_band_occupancy_equals_full_2x2x2_sampling() -> None:
    from calcinet.data.phantom.growth.lattice import Grid, balls_field, band_fractions

    grid = Grid((20, 20, 20), (1.0, 1.2, 0.9), np.eye(3), (0, 0, 0))
    field = balls_field([(0.7, -1.1, 0.4), (3.0, 2.0, -2.0)], [5.3, 3.1])
    frac, inner = band_fractions(grid, field, (0.0, -1.5))
    z, y, x = np.meshgrid(*grid.axes, indexing="ij")
    brute = np.zeros_like(frac)
    brute_inner = np.zeros_like(frac)
    for dz in (-1, 1):
        for dy in (-1, 1):
            for dx in (-1, 1):
                s = np.array([dz, dy, dx]) * np.array([1.0, 1.2, 0.9]) / 4
                f = field(z + s[0], y + s[1], x + s[2])
                brute += (f < 0) / 8
                brute_inner += (f < -1.5) / 8
    np.testing.assert_allclose(frac, brute, atol=1e-6)
    np.testing.assert_allclose(inner, brute_inner, atol=1e-6)
    assert 0 < ((frac > 0) & (frac < 1)).sum() < frac.size // 4


def test_stamped_lattice_balls_have_the_volume_of_the_ball() -> None:
    from calcinet.data.phantom.growth.lattice import FineBox, Grid

    grid = Grid((24, 24, 24), (1.25, 1.25, 1.25), np.eye(3), (0, 0, 0))
    for radius in (2.0, 4.0, 8.0):
        box = FineBox(grid, (0, 0, 0), radius + 2)
        frac, _ = box.block(box.stamp(box.empty(), (0.1, 0.2, -0.3), radius))
        volume = frac.sum() * 1.25**3
        assert volume == pytest.approx(4 / 3 * np.pi * radius**3, rel=0.12), radius


def test_layers_keep_obj_a_mix_of_tissue_and_structures() -> None:
    from calcinet.data.phantom.growth.tissue import Layers

    tissue = np.full((2, 2, 2), 40.0, np.float32)
    layers = Layers(tissue)
    f1, f2 = np.float32(0.5), np.float32(0.25)
    layers.paint(np.full((2, 2, 2), f1, np.float32), 1000.0, deposit=True)
    layers.paint(np.full((2, 2, 2), f2, np.float32), 0.0)
    cover = 1 - (1 - f1) * (1 - f2)
    structures = ((1 - f2) * f1 * 1000.0 + f2 * 0.0) / cover
    np.testing.assert_allclose(layers.cover, cover, rtol=1e-6)
    np.testing.assert_allclose(layers.obj, (1 - cover) * 40.0 + cover * structures, rtol=1e-6)
    np.testing.assert_allclose(layers.deposit, f1 * (1 - f2), rtol=1e-6)
