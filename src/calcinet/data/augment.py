"""Training augmentation, in two interchangeable forms with the same options and distributions.

* :func:`augment_transforms`: MONAI dictionary transforms, one sample at a time in the loader
  (``data.augment_on=loader``).
* :class:`BatchAugment`: the same flips, 90-degree turns, affine warp and noise applied to a whole
  batch with torch operations after it reaches the training device
  (``data.augment_on=device``, the default). On a GPU this takes augmentation off the CPU; on
  the CPU it costs about a quarter of the per-sample chain (``scripts/bench_pipeline.py``).

Both draw, per sample and in this order: a flip along each of x, y and z with ``flip_prob``; a
turn by 90, 180 or 270 degrees in the x-y plane with ``rotate90_prob``; with ``affine_prob`` a
rotation by up to ``rotate_deg`` about each axis times a scaling by up to ``1 +/- scale`` per
axis (bilinear, border padding, about the patch centre); then the shifts between CT scanners and
protocols: with ``intensity_prob`` a scaling of the windowed intensities by up to
``1 +/- intensity_scale`` (about the window's low end), and independently with the same
probability a shift by up to ``+/- intensity_offset_hu`` HU; with ``resolution_prob`` a Gaussian
blur (sigma drawn in [0.25, ``resolution_sigma_xy``] voxels in x and y, [0.25,
``resolution_sigma_z``] in z: a wider slice profile) and independently with the same
probability a resampling to a coarser grid and back (zoom drawn in [``resolution_zoom``, 1]:
nearest down, trilinear up, as MONAI's ``RandSimulateLowResolution``); with ``noise_prob``
Gaussian noise whose standard deviation is drawn uniformly from ``[0, noise_std_hu]`` HU; with
``texture_noise_prob`` noise with a correlated texture (white noise smoothed by a Gaussian of
``texture_noise_sigma`` voxels, rescaled to a standard deviation drawn from ``[0,
texture_noise_std_hu]`` HU), as reconstruction kernels give. HU amounts apply to windowed values,
so they are divided by the window width. The scanner-shift transforms are off by default
(probabilities 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers import GaussianFilter
from monai.transforms import (
    MapTransform,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandomizableTransform,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSimulateLowResolutiond,
    Transform,
)
from monai.transforms.utils import create_rotate, create_scale

from calcinet.config import ConfigError

#: Default augmentation strengths; each may be overridden from ``data.augment``.
DEFAULT_AUGMENT: dict[str, float] = {
    "flip_prob": 0.5,
    "rotate90_prob": 0.5,
    "affine_prob": 0.25,
    "rotate_deg": 15.0,
    "scale": 0.1,
    "noise_prob": 0.25,
    "noise_std_hu": 10.0,
    "intensity_prob": 0.0,
    "intensity_scale": 0.03,
    "intensity_offset_hu": 20.0,
    "resolution_prob": 0.0,
    "resolution_sigma_xy": 0.5,
    "resolution_sigma_z": 1.5,
    "resolution_zoom": 0.6,
    "texture_noise_prob": 0.0,
    "texture_noise_std_hu": 15.0,
    "texture_noise_sigma": 1.0,
}
#: The smallest blur sigma (voxels) a resolution loss draws (MONAI's RandGaussianSmooth default).
MIN_BLUR_SIGMA = 0.25


def augment_options(overrides: Mapping[str, float]) -> dict[str, float]:
    """``DEFAULT_AUGMENT`` updated with ``overrides`` (``data.augment``); unknown keys are named."""
    unknown = set(overrides) - set(DEFAULT_AUGMENT)
    if unknown:
        raise ConfigError(
            f"data.augment: unknown option(s) {sorted(unknown)}; expected {sorted(DEFAULT_AUGMENT)}"
        )
    options = dict(DEFAULT_AUGMENT)
    for key, value in overrides.items():
        try:
            options[key] = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"data.augment.{key}={value!r}: expected a number") from None
    for key in ("flip_prob", "rotate90_prob", "affine_prob", "noise_prob", "intensity_prob",
                "resolution_prob", "texture_noise_prob"):
        if not 0.0 <= options[key] <= 1.0:
            raise ConfigError(f"data.augment.{key}={options[key]}: expected a probability in "
                              "[0, 1]")
    for key in ("rotate_deg", "scale", "noise_std_hu", "intensity_scale", "intensity_offset_hu",
                "texture_noise_std_hu"):
        if options[key] < 0.0:
            raise ConfigError(f"data.augment.{key}={options[key]}: expected a value >= 0")
    for key in ("resolution_sigma_xy", "resolution_sigma_z"):
        if options[key] < MIN_BLUR_SIGMA:
            raise ConfigError(f"data.augment.{key}={options[key]}: expected a sigma >= "
                              f"{MIN_BLUR_SIGMA} voxels")
    if not 0.0 < options["resolution_zoom"] <= 1.0:
        raise ConfigError(f"data.augment.resolution_zoom={options['resolution_zoom']}: expected a "
                          "zoom in (0, 1]")
    if options["texture_noise_sigma"] <= 0.0:
        raise ConfigError(f"data.augment.texture_noise_sigma={options['texture_noise_sigma']}: "
                          "expected a sigma > 0 voxels")
    return options


def _windowed(hu: float, hu_window: Sequence[float]) -> float:
    """An amount of HU in windowed units (the window maps [low, high] HU to [0, 1])."""
    low, high = (float(v) for v in hu_window)
    return hu / (high - low)


class RandTextureNoised(RandomizableTransform, MapTransform):
    """Noise with a correlated texture, per sample: white Gaussian noise smoothed by a Gaussian of
    ``sigma`` voxels (MONAI's ``GaussianFilter``), rescaled to a standard deviation drawn from
    ``[0, std]``. Written here because MONAI's noise transforms are all white (voxel-independent),
    while CT noise is correlated by the reconstruction kernel.
    """

    def __init__(self, keys: str, prob: float, std: float, sigma: float) -> None:
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, keys)
        self.std, self.sigma = std, sigma
        self.filter = GaussianFilter(3, sigma, approx="erf")
        self.gain = texture_gain(self.filter)
        self.spread = 0.0

    def randomize(self, data: object = None) -> None:
        super().randomize(None)
        self.spread = self.R.uniform(0.0, self.std)

    def __call__(self, data: Mapping) -> dict:
        out = dict(data)
        self.randomize()
        if not self._do_transform:
            return out
        for key in self.key_iterator(out):
            image = out[key]
            white = torch.as_tensor(self.R.standard_normal(tuple(image.shape)),
                                    dtype=torch.float32)
            texture = self.filter(white[None])[0] * (self.spread / self.gain)
            out[key] = image + texture.to(device=image.device, dtype=image.dtype)
        return out


def texture_gain(smoothing: GaussianFilter) -> float:
    """Standard deviation of unit white noise after ``smoothing`` (the root of the sum of its
    squared kernel weights, read off the response to one voxel), to rescale it to 1."""
    size = 2 * int(4 * float(torch.as_tensor(smoothing.sigma[0]).max()) + 1) + 1
    impulse = torch.zeros(1, 1, size, size, size)
    impulse[0, 0, size // 2, size // 2, size // 2] = 1.0
    return float(smoothing(impulse).square().sum().sqrt())


def augment_transforms(hu_window: Sequence[float], **overrides: float) -> list[Transform]:
    """The per-sample MONAI form, for the ``image`` key of a ``[C, X, Y, Z]`` sample."""
    a = augment_options(overrides)
    rotate = math.radians(a["rotate_deg"])
    xy, z = (MIN_BLUR_SIGMA, a["resolution_sigma_xy"]), (MIN_BLUR_SIGMA, a["resolution_sigma_z"])
    return [
        *(RandFlipd(keys="image", prob=a["flip_prob"], spatial_axis=axis) for axis in range(3)),
        RandRotate90d(keys="image", prob=a["rotate90_prob"], spatial_axes=(0, 1)),
        RandAffined(
            keys="image", prob=a["affine_prob"], rotate_range=(rotate, rotate, rotate),
            scale_range=(a["scale"],) * 3, mode="bilinear", padding_mode="border",
        ),
        RandScaleIntensityd(keys="image", factors=a["intensity_scale"],
                            prob=a["intensity_prob"]),
        RandShiftIntensityd(keys="image", offsets=_windowed(a["intensity_offset_hu"], hu_window),
                            prob=a["intensity_prob"]),
        RandGaussianSmoothd(keys="image", sigma_x=xy, sigma_y=xy, sigma_z=z,
                            prob=a["resolution_prob"]),
        RandSimulateLowResolutiond(keys="image", prob=a["resolution_prob"],
                                   zoom_range=(a["resolution_zoom"], 1.0)),
        RandGaussianNoised(keys="image", prob=a["noise_prob"],
                           std=_windowed(a["noise_std_hu"], hu_window)),
        RandTextureNoised(keys="image", prob=a["texture_noise_prob"],
                          std=_windowed(a["texture_noise_std_hu"], hu_window),
                          sigma=a["texture_noise_sigma"]),
    ]


class BatchAugment:
    """The batched form: ``augment(images)`` for ``images`` of shape ``[N, C, X, Y, Z]``.

    Every decision is drawn from torch's CPU generator and the noise from the generator of the
    batch's device (both seeded by ``seed_everything``); the input is left unchanged and a new
    tensor returned.

    Args:
        hu_window: the ``[low, high]`` HU window the images were scaled with.
        **overrides: augmentation strengths (keys of ``DEFAULT_AUGMENT``).
    """

    def __init__(self, hu_window: Sequence[float], **overrides: float) -> None:
        self.options = augment_options(overrides)
        self.noise_std = _windowed(self.options["noise_std_hu"], hu_window)
        self.offset = _windowed(self.options["intensity_offset_hu"], hu_window)
        self.texture_std = _windowed(self.options["texture_noise_std_hu"], hu_window)
        self.texture_filter = GaussianFilter(3, self.options["texture_noise_sigma"], approx="erf")
        self.texture_gain = texture_gain(self.texture_filter)
        self.max_angle = math.radians(self.options["rotate_deg"])

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v:g}" for k, v in self.options.items())
        return f"{type(self).__name__}({options})"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 5:
            raise ValueError(f"BatchAugment: expected images [N, C, X, Y, Z], got shape "
                             f"{tuple(images.shape)}")
        a = self.options
        count = len(images)
        # Every decision is drawn on the CPU, so a GPU batch never waits for a device sync.
        flips = torch.rand(count, 3) < a["flip_prob"]
        turns = torch.where(torch.rand(count) < a["rotate90_prob"],
                            torch.randint(1, 4, (count,)), 0)
        if turns.any() and images.shape[2] != images.shape[3]:
            raise ConfigError(
                f"data.augment.rotate90_prob={a['rotate90_prob']:g} needs patches square in x "
                f"and y, got {tuple(images.shape[2:])}; set it to 0")
        out = images.clone()
        for i, (flip, k) in enumerate(zip(flips.tolist(), turns.tolist(), strict=True)):
            moved = _flip_then_turn(images[i], flip, k)
            if moved is not None:
                out[i] = moved
        chosen = self._draw(count, a["affine_prob"])
        if chosen.numel():
            out[chosen] = warp(out[chosen], self._affine_matrices(len(chosen)))
        self._scanner_shifts(out)
        chosen = self._draw(count, a["noise_prob"])
        if chosen.numel():
            std = (torch.rand(len(chosen)) * self.noise_std).to(out.device, out.dtype)
            noise = torch.randn_like(out[chosen]) * _per_sample(std, out.ndim)
            out[chosen] = out[chosen] + noise
        chosen = self._draw(count, a["texture_noise_prob"])
        if chosen.numel():
            std = (torch.rand(len(chosen)) * self.texture_std).to(out.device, out.dtype)
            white = torch.randn_like(out[chosen])
            texture = self.texture_filter.to(out.device)(white) / self.texture_gain
            out[chosen] = out[chosen] + texture * _per_sample(std, out.ndim)
        return out

    def _scanner_shifts(self, out: torch.Tensor) -> None:
        """Intensity scale and offset, blur and coarser resampling, in place on ``out``."""
        a, count = self.options, len(out)
        chosen = self._draw(count, a["intensity_prob"])
        if chosen.numel():
            factor = 1 + (torch.rand(len(chosen)) * 2 - 1) * a["intensity_scale"]
            out[chosen] = out[chosen] * _per_sample(factor.to(out.device, out.dtype), out.ndim)
        chosen = self._draw(count, a["intensity_prob"])
        if chosen.numel():
            offset = (torch.rand(len(chosen)) * 2 - 1) * self.offset
            out[chosen] = out[chosen] + _per_sample(offset.to(out.device, out.dtype), out.ndim)
        chosen = self._draw(count, a["resolution_prob"])
        if chosen.numel():
            low = torch.full((len(chosen), 3), MIN_BLUR_SIGMA)
            high = torch.tensor([a["resolution_sigma_xy"]] * 2 + [a["resolution_sigma_z"]])
            sigmas = low + torch.rand(len(chosen), 3) * (high - low)
            for i, sigma in zip(chosen.tolist(), sigmas.tolist(), strict=True):
                blur = GaussianFilter(3, sigma, approx="erf").to(out.device)
                out[i] = blur(out[i][None])[0]
        chosen = self._draw(count, a["resolution_prob"])
        if chosen.numel():
            zooms = a["resolution_zoom"] + torch.rand(len(chosen)) * (1 - a["resolution_zoom"])
            size = out.shape[2:]
            for i, zoom in zip(chosen.tolist(), zooms.tolist(), strict=True):
                # RandSimulateLowResolution's sizes and modes: nearest down, trilinear up.
                coarse = tuple(max(1, int(round(n * zoom))) for n in size)
                down = F.interpolate(out[i][None], size=coarse, mode="nearest")
                out[i] = F.interpolate(down, size=size, mode="trilinear", align_corners=False)[0]

    @staticmethod
    def _draw(count: int, prob: float) -> torch.Tensor:
        """Indices of the samples that get a transform of probability ``prob``."""
        return torch.nonzero(torch.rand(count) < prob).flatten()

    def _affine_matrices(self, count: int) -> torch.Tensor:
        """``count`` rotation-times-scaling matrices ``[count, 3, 3]``, drawn as RandAffine does."""
        angles = (torch.rand(count, 3) * 2 - 1) * self.max_angle
        scales = 1 + (torch.rand(count, 3) * 2 - 1) * self.options["scale"]
        matrices = [
            create_rotate(3, a.tolist(), backend="torch") @ create_scale(3, s.tolist(),
                                                                         backend="torch")
            for a, s in zip(angles, scales, strict=True)
        ]
        return torch.stack(matrices)[:, :3, :3]


def _per_sample(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """``values [M]`` shaped to broadcast over ``[M, C, X, Y, Z]``."""
    return values.view(-1, *([1] * (ndim - 1)))


#: Axes a turn by k * 90 degrees in the x-y plane flips (before swapping x and y when k is odd):
#: what ``torch.rot90(t, k, dims=(1, 2))`` does to a ``[C, X, Y, Z]`` sample.
_TURN_FLIPS = {0: set(), 1: {2}, 2: {1, 2}, 3: {1}}


def _flip_then_turn(sample: torch.Tensor, flip: Sequence[bool], k: int) -> torch.Tensor | None:
    """``rot90(flip(sample, axes where flip), k, (x, y))`` with one copy; None when unchanged."""
    axes = {axis for axis, chosen in zip((1, 2, 3), flip, strict=True) if chosen}
    axes ^= _TURN_FLIPS[k]  # flipping an axis twice leaves it as it was
    if not axes and k % 2 == 0:
        return None
    moved = sample.flip(sorted(axes)) if axes else sample
    return moved.transpose(1, 2) if k % 2 else moved


def warp(images: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Resample ``images [N, C, X, Y, Z]`` through ``matrices [N, 3, 3]`` about the patch centre.

    Output voxel ``c`` (coordinates centred on the patch, in voxels) takes the bilinear value of
    input position ``matrices @ c``, the border value outside: MONAI's ``Affine`` convention,
    batched.
    """
    size = images.shape[2:]
    to_grid = torch.diag(2 / (torch.tensor(size, dtype=torch.float64) - 1).clamp(min=1))
    theta = to_grid @ matrices.to(torch.float64) @ torch.linalg.inv(to_grid)
    # grid_sample's grid holds, for each output voxel, the input position as (z, y, x) in
    # [-1, 1]. The map is linear, so the grid is a sum of one broadcast term per axis (this is
    # F.affine_grid, a few times faster on the CPU).
    theta = theta.flip(1).to(device=images.device, dtype=images.dtype)
    grid = torch.zeros(len(images), *size, 3, device=images.device, dtype=images.dtype)
    for axis, n in enumerate(size):
        shape = [1, 1, 1, 1]
        shape[axis + 1] = n
        coords = torch.linspace(-1, 1, n, device=images.device, dtype=images.dtype)
        grid += theta[:, None, None, None, :, axis] * coords.view(*shape, 1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)
