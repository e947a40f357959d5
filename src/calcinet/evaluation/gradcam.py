"""Grad-CAM (MONAI's :class:`monai.visualize.GradCAM`) heat maps of what drove a decision, for
any network of the registry, upsampled (trilinear, by MONAI) to the patch.

MONAI's implementation fits: it takes the target layer by name, hooks it, and upsamples the map
to the input; only the choice of layer is ours. The last convolution is too coarse to read: the
compact network at 48^3 ends on a 3x3x3 map, one cell per 16^3 voxels (20 mm at 1.25 mm). The
default target is therefore found from the feature-map sizes of one forward pass, the same rule
for every network family: the deepest module whose map keeps at least :data:`MIN_MAP_SIDE`
voxels on every side (12^3 at 48^3: a cell per 4^3 voxels, 5 mm), or the finest map there is
when none does. Modules that run more than once in a pass (a shared ReLU) are not candidates,
since their hooks would hold the last call only, nor padding modules (a border, not a map).

The network has a single malignancy logit, so it is wrapped to give two scores
``[-logit, logit]`` (benign, malignant): Grad-CAM of the *predicted* class then shows what pushed
the model to its decision, also for a benign prediction.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from monai.visualize import GradCAM
from torch import nn

from calcinet.evaluation import EvaluationError

#: Smallest side (voxels) of the feature map the default target layer must keep.
MIN_MAP_SIDE = 12


class _TwoScores(nn.Module):
    """``[N, 1]`` logit -> ``[N, 2]`` scores (benign, malignant) for class-indexed Grad-CAM."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logit = self.network(image).reshape(image.shape[0], 1)
        return torch.cat([-logit, logit], dim=1)


def _scale_to_unit(maps: torch.Tensor) -> torch.Tensor:
    """Each map linearly to [0, 1], largest activation at 1 (an all-zero map stays zero).

    MONAI's default post-processing maps (min, max) to (1, 0), i.e. flips the magnitudes; an
    overlay needs the most important voxels brightest.
    """
    flat = maps.reshape(maps.shape[0], -1)
    low = flat.min(dim=1).values.reshape(-1, *[1] * (maps.ndim - 1))
    span = (flat.max(dim=1).values - flat.min(dim=1).values).reshape(low.shape)
    return torch.where(span > 0, (maps - low) / span.clamp_min(1e-12), torch.zeros_like(maps))


def feature_maps(network: nn.Module, example: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, spatial shape)`` of every module whose output is a feature map with the spatial
    dimensions of ``example`` (``[1, C, X, Y, Z]``), in the order the modules finish: each module
    that runs exactly once in the pass and does not enlarge its input (padding)."""
    finished: list[tuple[str, tuple[int, ...]]] = []
    calls: dict[str, int] = {}
    spatial = example.ndim - 2

    def record(name: str, inputs: tuple, output: object) -> None:
        calls[name] = calls.get(name, 0) + 1
        if not isinstance(output, torch.Tensor) or output.ndim != example.ndim:
            return
        shape = tuple(output.shape[-spatial:])
        given = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        if (
            given is not None
            and given.ndim == example.ndim
            and any(o > i for o, i in zip(shape, given.shape[-spatial:], strict=True))
        ):
            return  # padding: a border around a map, not a map of its own
        finished.append((name, shape))

    hooks = [
        module.register_forward_hook(lambda _m, i, out, name=name: record(name, i, out))
        for name, module in network.named_modules()
        if name
    ]
    try:
        with torch.no_grad():
            network(example)
    finally:
        for hook in hooks:
            hook.remove()
    return [(name, shape) for name, shape in finished if calls[name] == 1]


def default_layer(network: nn.Module, example: torch.Tensor, min_side: int = MIN_MAP_SIDE) -> str:
    """The Grad-CAM target layer: the deepest module whose feature map keeps ``min_side``
    voxels on every side, or the one with the finest map when no map is that large.

    Raises:
        ValueError: the network has no feature map with the dimensions of the input (a 2.5D
            network works on 2D slices).
    """
    maps = feature_maps(network, example)
    if not maps:
        raise ValueError(
            f"Grad-CAM: network {type(network).__name__} has no {example.ndim - 2}D feature map "
            "to attribute to the patch"
        )
    finest = max(min(shape) for _, shape in maps)
    wanted = min(int(min_side), finest)
    return [name for name, shape in maps if min(shape) >= wanted][-1]


def gradcam_maps(
    network: nn.Module,
    images: torch.Tensor,
    classes: Sequence[int],
    layer: str | None = None,
) -> tuple[np.ndarray, str]:
    """Grad-CAM maps ``[K, X, Y, Z]`` in [0, 1] (1: most important), the shape of the patches
    ``images`` (``[K, 1, X, Y, Z]``, windowed), each for its class in ``classes`` (0 benign,
    1 malignant); also returns the layer used: ``layer`` (a name of ``named_modules()``) or
    :func:`default_layer`.

    Works on a copy of the network: MONAI leaves its hooks on the module it is given.

    Raises:
        EvaluationError: ``layer`` is not a module of the network.
        ValueError: no default layer (see :func:`default_layer`).
    """
    device = next(network.parameters()).device
    work = copy.deepcopy(network).eval()
    for module in work.modules():  # full backward hooks refuse in-place activations
        if getattr(module, "inplace", False):
            module.inplace = False
    images = images.to(device)
    known = {name for name, _ in work.named_modules() if name}
    if layer is not None and layer not in known:
        raise EvaluationError(
            f"gradcam.layer={layer!r}: no such module in {type(network).__name__}; "
            "leave it null for the deepest layer with a map of at least "
            f"{MIN_MAP_SIDE} voxels a side"
        )
    layer = layer or default_layer(work, images[:1])
    cam = GradCAM(
        nn_module=_TwoScores(work), target_layers=f"network.{layer}", postprocessing=_scale_to_unit
    )
    maps = []
    with torch.enable_grad():
        for image, target in zip(images, classes, strict=True):
            heat = cam(x=image[None], class_idx=int(target))
            maps.append(heat[0, 0].detach().float().cpu().numpy())
    return np.stack(maps), layer
