"""MONAI dictionary-transform chains.

A chain has three parts:

1. the *load* stage, which comes from the record source (render the phantom, or read a file);
2. the deterministic *prepare* stage shared by every source: orient to RAS, resample to the
   configured spacing, window the HU values to ``[0, 1]``, pad/crop to the patch size;
3. the random *augment* stage (:mod:`calcinet.data.augment`), on the training split only and only
   when augmentation runs per sample in the loader (``data.augment_on=loader``).

MONAI's ``CacheDataset`` caches everything up to the first random transform, so stages 1 and 2 run
once per sample and only the augmentations run every epoch.

Tensors follow MONAI's layout: ``[C, X, Y, Z]`` in RAS orientation, so ``patch_size`` and
``spacing`` are given in (x, y, z) order.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    EnsureTyped,
    MapTransform,
    Orientationd,
    ResizeWithPadOrCropd,
    ScaleIntensityRanged,
    Spacingd,
    Transform,
)

from calcinet.data.augment import augment_transforms
from calcinet.data.phantom import PhantomConfig, render


def phantom_to_metatensor(volume_zyx: np.ndarray, spacing_xyz: Sequence[float]) -> MetaTensor:
    """Wrap a phantom volume (``[z, y, x]``, HU) as a ``[1, x, y, z]`` MetaTensor in RAS.

    The transpose puts the phantom in the layout MONAI's readers give a NIfTI file written with
    ``affine = diag(spacing)``, so rendered and materialised samples are the same tensor.
    """
    array = np.ascontiguousarray(volume_zyx.transpose(2, 1, 0), dtype=np.float32)[None]
    affine = np.diag([*map(float, spacing_xyz), 1.0])
    return MetaTensor(torch.from_numpy(array), affine=torch.from_numpy(affine))


class RenderPhantomd(MapTransform):
    """Render ``data[params_key]`` (from :func:`phantom.sample_params`) into ``data[image_key]``.

    Deterministic: the sampled parameters carry their own render seed, so the sample is the same
    in every epoch, worker and process.
    """

    def __init__(
        self, config: PhantomConfig, params_key: str = "params", image_key: str = "image"
    ) -> None:
        super().__init__(keys=[params_key])
        self.config = config
        self.params_key = params_key
        self.image_key = image_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        params = d.pop(self.params_key)
        spacing_xyz = tuple(reversed(self.config.spacing))
        d[self.image_key] = phantom_to_metatensor(render(params, self.config), spacing_xyz)
        return d


def prepare_transforms(
    patch_size: Sequence[int], spacing: Sequence[float], hu_window: Sequence[float]
) -> list[Transform]:
    """Orient, resample, window and pad/crop: the deterministic part of every chain."""
    low, high = (float(v) for v in hu_window)
    return [
        Orientationd(keys="image", axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        Spacingd(keys="image", pixdim=tuple(float(s) for s in spacing), mode="bilinear"),
        ScaleIntensityRanged(keys="image", a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True),
        ResizeWithPadOrCropd(keys="image", spatial_size=tuple(int(s) for s in patch_size),
                             mode="constant", value=0.0),
    ]


def build_transforms(
    load: Sequence[Transform],
    patch_size: Sequence[int],
    spacing: Sequence[float],
    hu_window: Sequence[float],
    augment: Mapping[str, float] | None = None,
) -> Compose:
    """The whole chain: ``load`` + prepare (+ augment when ``augment`` is not None) + to tensor."""
    chain: list[Transform] = [*load, *prepare_transforms(patch_size, spacing, hu_window)]
    if augment is not None:
        chain += augment_transforms(hu_window, **dict(augment))
    chain.append(EnsureTyped(keys="image", dtype=torch.float32, track_meta=False))
    return Compose(chain)
