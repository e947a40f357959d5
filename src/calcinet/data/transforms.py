"""MONAI dictionary-transform chains around :mod:`calcinet.imaging`.

A chain has three parts:

1. the *load* stage, which comes from the record source and puts a
   :class:`~calcinet.imaging.Volume` (HU + voxel-to-RAS affine) in ``data["image"]``: render the
   phantom, read a file (:class:`ReadVolumed`), take an array out of an ``.npz``;
2. the deterministic *prepare* stage shared by every source: :class:`CutPatchd` cuts the patch
   with :func:`calcinet.imaging.cut_patch` (the very function ``calcinet-predict`` uses, so a
   finding gives the same patch in training, evaluation and inference), then the HU window maps
   it to ``[0, 1]``;
3. the random *augment* stage (:mod:`calcinet.data.augment`), on the training split only and only
   when augmentation runs per sample in the loader (``data.augment_on=loader``).

MONAI's ``CacheDataset`` caches everything up to the first random transform, so stages 1 and 2 run
once per sample and only the augmentations run every epoch.

Tensors follow MONAI's layout: ``[C, X, Y, Z]`` in RAS orientation, so ``patch_size`` and
``spacing`` are given in (x, y, z) order.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import Compose, EnsureTyped, MapTransform, ScaleIntensityRanged, Transform

from calcinet.data.augment import augment_transforms
from calcinet.data.keys import FINDING_KEY, QUANTILES_KEY
from calcinet.data.phantom import PhantomConfig, render
from calcinet.imaging import Volume, cut_patch, hu_quantiles, pad_value_hu, read_volume

#: Changes whenever the prepared samples would (the disk cache is keyed on it): 2 = patches cut
#: by :func:`calcinet.imaging.cut_patch`.
PATCH_FORMAT = 2


def phantom_volume(volume_zyx: np.ndarray, spacing_xyz: Sequence[float]) -> Volume:
    """A phantom volume (``[z, y, x]``, HU) as a RAS :class:`Volume` of voxel size
    ``spacing_xyz`` (the layout a NIfTI file written with ``affine = diag(spacing)`` reads as)."""
    array = np.ascontiguousarray(volume_zyx.transpose(2, 1, 0), dtype=np.float32)
    return Volume(array, np.diag([*map(float, spacing_xyz), 1.0]))


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
        d[self.image_key] = phantom_volume(render(params, self.config), spacing_xyz)
        return d


class ReadVolumed(MapTransform):
    """Replace ``data["image"]`` (a path) by the :class:`Volume` :func:`read_volume` reads.

    Findings of one scan usually follow each other in a manifest: the last ``keep`` scans read are
    kept (keyed on path, size and modification time), so a scan with ten findings is read once
    while the cache fills.

    Args:
        npy_spacing_key: record key of the voxel size (mm) of an ``.npy`` file.
        keep: how many whole volumes to keep in memory.
    """

    def __init__(self, npy_spacing_key: str = "npy_spacing", keep: int = 2) -> None:
        super().__init__(keys=["image"])
        self.npy_spacing_key = npy_spacing_key
        self.keep = int(keep)
        self._kept: OrderedDict[tuple, Volume] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, path: str | Path, npy_spacing: Sequence[float]) -> Volume:
        stat = Path(path).stat()
        key = (str(path), tuple(float(s) for s in npy_spacing), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]
        volume = read_volume(path, tuple(float(s) for s in npy_spacing))
        with self._lock:
            self._kept[key] = volume
            while len(self._kept) > self.keep:
                self._kept.popitem(last=False)
        return volume

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        d["image"] = self.read(d["image"], d.pop(self.npy_spacing_key, (1.0, 1.0, 1.0)))
        return d

    def __getstate__(self) -> dict[str, Any]:  # loader workers get an empty memory and a new lock
        state = dict(self.__dict__)
        state["_kept"], state["_lock"] = OrderedDict(), None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class CutPatchd(MapTransform):
    """``data["image"]`` (a :class:`Volume`) -> the ``[1, X, Y, Z]`` float32 HU patch, cut by
    :func:`calcinet.imaging.cut_patch` around ``data["finding"]`` when the record has one, else
    from the middle of the volume.

    Also sets ``data["hu_quantiles"]`` (float32 ``[3]``) for the model's intensity profile.

    The patch is handed on as a NumPy array, so that the per-sample steps after it (MONAI's
    windowing, the host-side augmentation) run single-threaded in NumPy: on a patch, torch's
    intra-op threads stall each other whenever the cores are busy (the cache threads, data-loader
    workers, another process), 5-7 ms per elementwise step measured instead of tens of
    microseconds. The chain's last step (``EnsureTyped``) makes it a tensor.
    """

    def __init__(self, patch_size: Sequence[int], spacing: Sequence[float],
                 pad_value: float) -> None:
        super().__init__(keys=["image"])
        self.patch_size = tuple(int(s) for s in patch_size)
        self.spacing = tuple(float(s) for s in spacing)
        self.pad_value = float(pad_value)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        finding = d.pop(FINDING_KEY, None) or {}
        patch = cut_patch(d["image"], self.patch_size, self.spacing, finding.get("center"),
                          finding.get("coord_space", "world"), self.pad_value)
        d["image"] = patch.values.numpy()
        d[QUANTILES_KEY] = torch.from_numpy(hu_quantiles(patch.values).astype(np.float32))
        return d


def prepare_transforms(
    patch_size: Sequence[int], spacing: Sequence[float], hu_window: Sequence[float],
    windowed: bool = True,
) -> list[Transform]:
    """Cut the patch and window it: the deterministic part of every chain. ``windowed=False``
    keeps the patch in HU (what an exported model takes: it windows inside)."""
    low, high = (float(v) for v in hu_window)
    chain: list[Transform] = [CutPatchd(patch_size, spacing, pad_value_hu((low, high)))]
    if windowed:
        chain.append(ScaleIntensityRanged(keys="image", a_min=low, a_max=high, b_min=0.0,
                                          b_max=1.0, clip=True))
    return chain


def build_transforms(
    load: Sequence[Transform],
    patch_size: Sequence[int],
    spacing: Sequence[float],
    hu_window: Sequence[float],
    augment: Mapping[str, float] | None = None,
    windowed: bool = True,
) -> Compose:
    """The whole chain: ``load`` + prepare (+ augment when ``augment`` is not None) + to tensor;
    ``windowed=False``: patches in HU, not windowed (no augmentation then)."""
    if augment is not None and not windowed:
        raise ValueError("augmentation works on windowed patches; expected windowed=True")
    chain: list[Transform] = [*load, *prepare_transforms(patch_size, spacing, hu_window,
                                                         windowed)]
    if augment is not None:
        chain += augment_transforms(hu_window, **dict(augment))
    chain.append(EnsureTyped(keys="image", dtype=torch.float32, track_meta=False))
    return Compose(chain)
