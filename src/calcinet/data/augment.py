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
axis (bilinear, border padding, about the patch centre); with ``noise_prob`` Gaussian noise whose
standard deviation is drawn uniformly from ``[0, noise_std_hu]`` HU (applied to windowed values,
so it is divided by the window width).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from monai.transforms import (
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandRotate90d,
    Transform,
)
from monai.transforms.utils import create_rotate, create_scale

#: Default augmentation strengths; each may be overridden from ``data.augment``.
DEFAULT_AUGMENT: dict[str, float] = {
    "flip_prob": 0.5,
    "rotate90_prob": 0.5,
    "affine_prob": 0.25,
    "rotate_deg": 15.0,
    "scale": 0.1,
    "noise_prob": 0.25,
    "noise_std_hu": 10.0,
}


def augment_options(overrides: Mapping[str, float]) -> dict[str, float]:
    """``DEFAULT_AUGMENT`` updated with ``overrides`` (``data.augment``); unknown keys are named."""
    unknown = set(overrides) - set(DEFAULT_AUGMENT)
    if unknown:
        raise ValueError(
            f"data.augment: unknown option(s) {sorted(unknown)}; expected {sorted(DEFAULT_AUGMENT)}"
        )
    options = {**DEFAULT_AUGMENT, **{k: float(v) for k, v in overrides.items()}}
    for key in ("flip_prob", "rotate90_prob", "affine_prob", "noise_prob"):
        if not 0.0 <= options[key] <= 1.0:
            raise ValueError(f"data.augment.{key}={options[key]}: expected a probability in [0, 1]")
    for key in ("rotate_deg", "scale", "noise_std_hu"):
        if options[key] < 0.0:
            raise ValueError(f"data.augment.{key}={options[key]}: expected a value >= 0")
    return options


def _noise_std(options: Mapping[str, float], hu_window: Sequence[float]) -> float:
    low, high = (float(v) for v in hu_window)
    return options["noise_std_hu"] / (high - low)


def augment_transforms(hu_window: Sequence[float], **overrides: float) -> list[Transform]:
    """The per-sample MONAI form, for the ``image`` key of a ``[C, X, Y, Z]`` sample."""
    a = augment_options(overrides)
    rotate = math.radians(a["rotate_deg"])
    return [
        *(RandFlipd(keys="image", prob=a["flip_prob"], spatial_axis=axis) for axis in range(3)),
        RandRotate90d(keys="image", prob=a["rotate90_prob"], spatial_axes=(0, 1)),
        RandAffined(
            keys="image", prob=a["affine_prob"], rotate_range=(rotate, rotate, rotate),
            scale_range=(a["scale"],) * 3, mode="bilinear", padding_mode="border",
        ),
        RandGaussianNoised(keys="image", prob=a["noise_prob"], std=_noise_std(a, hu_window)),
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
        self.noise_std = _noise_std(self.options, hu_window)
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
            raise ValueError(
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
        chosen = self._draw(count, a["noise_prob"])
        if chosen.numel():
            std = (torch.rand(len(chosen)) * self.noise_std).to(out.device, out.dtype)
            noise = torch.randn_like(out[chosen]) * std.view(-1, *([1] * (out.ndim - 1)))
            out[chosen] = out[chosen] + noise
        return out

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
