"""Grad-CAM (MONAI) heat maps of what drove a decision, for any network of the registry.

The target layer is found generically: the convolution that runs last in a forward pass (the
deepest feature map before global pooling). The network has a single malignancy logit, so it is
wrapped to give two scores ``[-logit, logit]`` (benign, malignant): Grad-CAM of the *predicted*
class then shows what pushed the model to its decision, also for a benign prediction.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from monai.visualize import GradCAM
from torch import nn

from calcinet.evaluation import EvaluationError


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


def last_conv_layer(network: nn.Module, example: torch.Tensor) -> str:
    """The name (as in ``named_modules``) of the convolution that runs last on ``example``."""
    order: list[str] = []
    hooks = [
        module.register_forward_hook(lambda *_, name=name: order.append(name))
        for name, module in network.named_modules()
        if isinstance(module, nn.modules.conv._ConvNd)
    ]
    try:
        with torch.no_grad():
            network(example)
    finally:
        for hook in hooks:
            hook.remove()
    if not order:
        raise EvaluationError(
            f"Grad-CAM: network {type(network).__name__} has no convolution layer; set "
            "gradcam.enabled=false"
        )
    return order[-1]


def gradcam_maps(
    network: nn.Module,
    images: torch.Tensor,
    classes: Sequence[int],
    layer: str | None = None,
) -> tuple[np.ndarray, str]:
    """Grad-CAM maps ``[K, X, Y, Z]`` in [0, 1] (1: most important) of ``images``
    (``[K, 1, X, Y, Z]``, windowed),
    each for its class in ``classes`` (0 benign, 1 malignant); also returns the layer used.

    Works on a copy of the network: MONAI leaves its hooks on the module it is given.
    """
    device = next(network.parameters()).device
    work = copy.deepcopy(network).eval()
    for module in work.modules():  # full backward hooks refuse in-place activations
        if getattr(module, "inplace", False):
            module.inplace = False
    images = images.to(device)
    layer = layer or last_conv_layer(work, images[:1])
    known = {name for name, _ in work.named_modules()}
    if layer not in known:
        raise EvaluationError(
            f"gradcam.layer={layer!r}: no such module in {type(network).__name__}; "
            "leave it null for the last convolution"
        )
    cam = GradCAM(
        nn_module=_TwoScores(work), target_layers=f"network.{layer}", postprocessing=_scale_to_unit
    )
    maps = []
    with torch.enable_grad():
        for image, target in zip(images, classes, strict=True):
            heat = cam(x=image[None], class_idx=int(target))
            maps.append(heat[0, 0].detach().float().cpu().numpy())
    return np.stack(maps), layer
