"""Batched training augmentation: each transform, its probability, and MONAI's conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.transforms import Affine
from monai.transforms.utils import create_rotate, create_scale
from scipy.ndimage import map_coordinates

from calcinet.data.augment import DEFAULT_AUGMENT, BatchAugment, augment_options, warp

WINDOW = (-200.0, 1800.0)
NONE = {"flip_prob": 0.0, "rotate90_prob": 0.0, "affine_prob": 0.0, "noise_prob": 0.0}


def _augment(**options: float) -> BatchAugment:
    return BatchAugment(WINDOW, **{**NONE, **options})


def _images(n: int = 8, shape: tuple[int, ...] = (6, 6, 5)) -> torch.Tensor:
    return torch.rand(n, 1, *shape, generator=torch.Generator().manual_seed(n))


def test_nothing_drawn_returns_an_equal_new_tensor() -> None:
    images = _images()
    out = _augment()(images)
    assert torch.equal(out, images) and out.data_ptr() != images.data_ptr()


def test_certain_flips_reverse_every_axis_and_leave_the_input_alone() -> None:
    images = _images()
    before = images.clone()
    out = _augment(flip_prob=1.0)(images)
    assert torch.equal(out, images.flip(2, 3, 4))
    assert torch.equal(images, before)


def test_flip_probability_is_honoured_per_axis() -> None:
    torch.manual_seed(0)
    images = torch.arange(2.0).view(1, 1, 2, 1, 1).repeat(4000, 1, 1, 1, 1)
    out = _augment(flip_prob=0.3)(images)
    flipped = (out[:, 0, 0, 0, 0] == 1.0).float().mean().item()
    assert flipped == pytest.approx(0.3, abs=0.03)


def test_turns_are_90_180_or_270_degrees_in_the_xy_plane() -> None:
    torch.manual_seed(1)
    images = _images(60, (5, 5, 3))
    out = _augment(rotate90_prob=1.0)(images)
    turns = []
    for before, after in zip(images, out, strict=True):
        matches = [k for k in range(4) if torch.equal(torch.rot90(before, k, dims=(1, 2)), after)]
        assert len(matches) == 1
        turns.append(matches[0])
    assert set(turns) == {1, 2, 3}


def test_flips_and_turns_compose_in_monai_order() -> None:
    torch.manual_seed(5)
    images = _images(30, (5, 5, 4))
    out = _augment(flip_prob=1.0, rotate90_prob=1.0)(images)
    for before, after in zip(images, out, strict=True):
        flipped = before.flip(1, 2, 3)  # RandFlipd x3 first, then RandRotate90d
        matches = [k for k in (1, 2, 3) if torch.equal(torch.rot90(flipped, k, (1, 2)), after)]
        assert len(matches) == 1


def test_turns_need_square_xy_patches() -> None:
    with pytest.raises(ValueError, match=r"rotate90_prob=1 needs patches square in x and y, "
                                         r"got \(6, 5, 5\)"):
        _augment(rotate90_prob=1.0)(_images(2, (6, 5, 5)))


def test_warp_follows_monai_affine_on_a_non_cubic_patch() -> None:
    images = torch.rand(2, 1, 20, 24, 18, dtype=torch.float64)
    rotate, scale = [0.2, -0.1, 0.15], [1.05, 0.93, 1.08]
    matrix = (create_rotate(3, rotate, backend="torch") @ create_scale(3, scale, backend="torch"))
    out = warp(images, matrix[None, :3, :3].repeat(2, 1, 1))
    # The pull convention, checked by hand: output voxel c samples input position A c.
    shape = np.array(images.shape[2:])
    centre = (shape[:, None] - 1) / 2
    voxels = np.indices(shape).reshape(3, -1)
    positions = matrix[:3, :3].numpy() @ (voxels - centre) + centre
    expected = map_coordinates(images[1, 0].numpy(), positions, order=1, mode="nearest")
    np.testing.assert_allclose(out[1, 0].numpy().ravel(), expected, atol=1e-10)
    # And MONAI's per-sample Affine (the transform RandAffined applies) agrees.
    monai = Affine(rotate_params=rotate, scale_params=scale, mode="bilinear",
                   padding_mode="border", image_only=True, dtype=torch.float64)(images[0])
    torch.testing.assert_close(torch.as_tensor(monai).double(), out[0], atol=1e-6, rtol=0)


def test_affine_without_range_is_the_identity() -> None:
    images = _images()
    out = _augment(affine_prob=1.0, rotate_deg=0.0, scale=0.0)(images)
    torch.testing.assert_close(out, images, atol=1e-5, rtol=0)


def test_affine_draws_stay_within_the_configured_ranges() -> None:
    torch.manual_seed(2)
    augment = _augment(rotate_deg=10.0, scale=0.2)
    matrices = augment._affine_matrices(500)
    # Rotation times scaling: the singular values are the scale factors.
    singular = torch.linalg.svdvals(matrices)
    assert singular.min() >= 0.8 - 1e-6 and singular.max() <= 1.2 + 1e-6
    assert singular.min() < 0.82 and singular.max() > 1.18


def test_noise_spread_is_drawn_up_to_the_configured_hu() -> None:
    torch.manual_seed(3)
    images = torch.zeros(400, 1, 8, 8, 8)
    out = _augment(noise_prob=1.0, noise_std_hu=20.0)(images)
    spread = out.flatten(1).std(dim=1) * (WINDOW[1] - WINDOW[0])  # back to HU
    assert spread.max() <= 20.0 * 1.1
    assert spread.mean().item() == pytest.approx(10.0, rel=0.1)  # uniform on [0, 20]


def test_same_seed_same_batch() -> None:
    images = _images(16, (6, 6, 6))
    augment = BatchAugment(WINDOW, **DEFAULT_AUGMENT)
    torch.manual_seed(4)
    first = augment(images)
    torch.manual_seed(4)
    assert torch.equal(augment(images), first)
    assert not torch.equal(augment(images), first)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("blur", 1.0, r"data.augment: unknown option\(s\) \['blur'\]"),
    ("flip_prob", 1.5, r"data.augment.flip_prob=1.5: expected a probability in \[0, 1\]"),
    ("scale", -0.1, r"data.augment.scale=-0.1: expected a value >= 0"),
])
def test_bad_options_are_named(key: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        augment_options({key: value})


def test_a_batch_without_channels_is_refused() -> None:
    with pytest.raises(ValueError, match=r"expected images \[N, C, X, Y, Z\], got shape "
                                         r"\(2, 6, 6, 6\)"):
        _augment()(torch.rand(2, 6, 6, 6))


def test_batched_and_monai_forms_draw_the_same_distribution() -> None:
    """The default options in both forms, 1500 draws each on one smooth patch: summary
    statistics of the outputs (how far they move, their roughness, where the mass goes along
    each axis) are indistinguishable (two-sample Kolmogorov-Smirnov)."""
    from monai.data import MetaTensor
    from monai.transforms import Compose
    from scipy.stats import ks_2samp

    from calcinet.data.augment import augment_transforms

    grid = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, 12)] * 3, indexing="ij"))
    image = (0.5 + 0.3 * torch.tanh(2 * grid[0] + grid[1] - 0.5 * grid[2]))[None].float()

    def stats(out: torch.Tensor) -> list[float]:
        roughness = sum(out.diff(n=2, dim=axis).abs().mean().item() for axis in (1, 2, 3))
        return [(out - image).abs().mean().item(), out.std().item(), roughness,
                *(out.narrow(axis, 0, 6).mean().item() for axis in (1, 2, 3))]

    monai = Compose(augment_transforms(WINDOW))
    monai.set_random_state(0)
    per_sample = np.array([
        stats(torch.as_tensor(monai({"image": MetaTensor(image.clone())})["image"]))
        for _ in range(1500)])
    torch.manual_seed(0)
    batched = BatchAugment(WINDOW, **DEFAULT_AUGMENT)(image[None].repeat(1500, 1, 1, 1, 1))
    per_batch = np.array([stats(out) for out in batched])
    for column in range(per_sample.shape[1]):
        a, b = np.round(per_sample[:, column], 4), np.round(per_batch[:, column], 4)
        assert ks_2samp(a, b).pvalue > 0.01, column
        assert a.mean() == pytest.approx(b.mean(), abs=0.01)


def test_intensity_scale_and_offset_stay_within_their_ranges() -> None:
    torch.manual_seed(6)
    images = torch.full((3000, 1, 2, 2, 2), 0.5)
    scaled = BatchAugment(WINDOW, **{**NONE, "intensity_prob": 1.0, "intensity_scale": 0.05,
                                     "intensity_offset_hu": 0.0})(images)[:, 0, 0, 0, 0] / 0.5
    assert scaled.min() >= 0.95 - 1e-6 and scaled.max() <= 1.05 + 1e-6
    assert scaled.std().item() == pytest.approx(0.1 / math.sqrt(12), rel=0.05)  # U(0.95, 1.05)
    shifted = BatchAugment(WINDOW, **{**NONE, "intensity_prob": 0.5, "intensity_scale": 0.0,
                                      "intensity_offset_hu": 30.0})(images)[:, 0, 0, 0, 0]
    hu = (shifted - 0.5) * (WINDOW[1] - WINDOW[0])
    assert hu.abs().max() <= 30.0 + 1e-3
    assert (hu != 0).float().mean().item() == pytest.approx(0.5, abs=0.03)


def test_resolution_loss_is_monais_blur_and_low_resolution_resampling() -> None:
    """The two steps, each forced on one sample, against MONAI's own transforms with the same
    draws: GaussianSmooth with the drawn sigmas, then RandSimulateLowResolution's resampling."""
    from monai.transforms import GaussianSmooth, Resize

    images = torch.rand(1, 1, 14, 14, 10, generator=torch.Generator().manual_seed(7))
    augment = BatchAugment(WINDOW, **{**NONE, "resolution_prob": 1.0})
    torch.manual_seed(8)
    out = augment(images)
    torch.manual_seed(8)
    # The draws before it: flips, turn, its angle, affine and the two intensity decisions.
    torch.rand(1, 3), torch.rand(1), torch.randint(1, 4, (1,)), torch.rand(1)
    torch.rand(1), torch.rand(1)
    assert torch.rand(1).item() < 1.0  # blur chosen
    sigma = (torch.full((1, 3), 0.25) + torch.rand(1, 3) * (torch.tensor([0.5, 0.5, 1.5])
                                                             - 0.25))[0].tolist()
    torch.rand(1)  # low resolution chosen
    zoom = 0.6 + torch.rand(1).item() * 0.4
    blurred = GaussianSmooth(sigma=sigma)(images[0])
    coarse = [max(1, int(round(n * zoom))) for n in images.shape[2:]]
    down = Resize(coarse, mode="nearest")(blurred)
    expected = Resize(list(images.shape[2:]), mode="trilinear", align_corners=False)(down)
    torch.testing.assert_close(out[0], torch.as_tensor(expected), atol=1e-6, rtol=0)


def test_texture_noise_has_the_drawn_spread_and_a_correlated_texture() -> None:
    torch.manual_seed(9)
    images = torch.zeros(300, 1, 24, 24, 24)
    out = BatchAugment(WINDOW, **{**NONE, "texture_noise_prob": 1.0, "texture_noise_std_hu": 20.0,
                                  "texture_noise_sigma": 1.0})(images)
    inner = out[:, 0, 6:-6, 6:-6, 6:-6]  # away from the filter's zero padding
    spread = inner.flatten(1).std(dim=1) * (WINDOW[1] - WINDOW[0])
    assert spread.max() <= 20.0 * 1.1
    assert spread.mean().item() == pytest.approx(10.0, rel=0.1)  # uniform on [0, 20] HU
    # Gaussian-smoothed white noise: neighbours correlate as exp(-d^2 / (4 sigma^2)) = 0.78.
    a, b = inner[:, :-1].flatten(), inner[:, 1:].flatten()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1].item() == pytest.approx(math.exp(-0.25),
                                                                             abs=0.03)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("resolution_zoom", 0.0, r"resolution_zoom=0.0: expected a zoom in \(0, 1\]"),
    ("resolution_sigma_z", 0.1, r"resolution_sigma_z=0.1: expected a sigma >= 0.25 voxels"),
    ("texture_noise_sigma", 0.0, r"texture_noise_sigma=0.0: expected a sigma > 0 voxels"),
    ("intensity_prob", 2.0, r"intensity_prob=2.0: expected a probability in \[0, 1\]"),
])
def test_bad_scanner_shift_options_are_named(key: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        augment_options({key: value})


def test_batched_and_monai_scanner_shifts_draw_the_same_distribution() -> None:
    """As above, with every scanner-shift transform on half the time and the geometric ones
    off: intensity, blur, coarse resampling, white and textured noise."""
    from monai.data import MetaTensor
    from monai.transforms import Compose
    from scipy.stats import ks_2samp

    from calcinet.data.augment import augment_transforms

    options = {**NONE, "intensity_prob": 0.5, "resolution_prob": 0.5, "noise_prob": 0.5,
               "texture_noise_prob": 0.5}
    grid = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, 12)] * 3, indexing="ij"))
    image = (0.5 + 0.3 * torch.tanh(3 * grid[0] + grid[1] - 2 * grid[2]))[None].float()

    def stats(out: torch.Tensor) -> list[float]:
        roughness = [out.diff(n=2, dim=axis).abs().mean().item() for axis in (1, 2, 3)]
        return [(out - image).abs().mean().item(), out.mean().item(), out.std().item(),
                *roughness]

    monai = Compose(augment_transforms(WINDOW, **options))
    monai.set_random_state(0)
    per_sample = np.array([
        stats(torch.as_tensor(monai({"image": MetaTensor(image.clone())})["image"]))
        for _ in range(600)])
    torch.manual_seed(0)
    batched = BatchAugment(WINDOW, **options)(image[None].repeat(600, 1, 1, 1, 1))
    per_batch = np.array([stats(out) for out in batched])
    for column in range(per_sample.shape[1]):
        a, b = np.round(per_sample[:, column], 4), np.round(per_batch[:, column], 4)
        assert ks_2samp(a, b).pvalue > 0.01, column
