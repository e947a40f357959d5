"""One factory for every network: ``build_network(name, **kwargs)``.

Every network has the same contract: a float tensor ``[N, 1, X, Y, Z]`` (one CT channel, already
windowed) in, ``[N, 1]`` malignancy logits out, random initialisation unless ``weights=<local
file>`` is given (nothing is downloaded). Adding a network is adding one registry entry
with the smallest patch side it accepts, so that a patch that is too small is refused before
training starts instead of failing deep inside a forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torchvision.models as tv_models
import torchvision.models.video as tv_video
from monai.networks import nets as monai_nets
from torch import nn

from calcinet.models.adapters import load_local_weights, replace_first_conv, replace_linear_head
from calcinet.models.compact import CompactCNN
from calcinet.models.slices import SliceStackNet


@dataclass(frozen=True)
class NetworkEntry:
    """A registered network: how to build it and the smallest patch side it accepts."""

    name: str
    builder: Callable[..., nn.Module]
    min_patch_size: Callable[..., int]
    description: str


_REGISTRY: dict[str, NetworkEntry] = {}


def register_network(
    name: str, description: str, min_patch_size: int | Callable[..., int]
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a builder to the registry under ``name``."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"network {name!r} is registered twice")
        size_fn = min_patch_size if callable(min_patch_size) else (lambda **_: min_patch_size)
        _REGISTRY[name] = NetworkEntry(name, builder, size_fn, description)
        return builder

    return decorate


def available_networks() -> list[str]:
    """Names accepted by :func:`build_network`, sorted."""
    return sorted(_REGISTRY)


def network_entry(name: str) -> NetworkEntry:
    """The registry entry for ``name``, or a ValueError listing the valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"model.network.name={name!r}: unknown network; expected one of "
            f"{', '.join(available_networks())}"
        ) from None


def min_patch_size(name: str, **kwargs: Any) -> int:
    """Smallest cube side (voxels) that network ``name`` built with ``kwargs`` accepts."""
    return network_entry(name).min_patch_size(**kwargs)


def check_patch_size(name: str, patch_size: Sequence[int], **kwargs: Any) -> None:
    """Raise a ValueError naming the value when ``patch_size`` is too small for the network."""
    smallest = min_patch_size(name, **kwargs)
    if min(int(s) for s in patch_size) < smallest:
        raise ValueError(
            f"data.patch_size={list(patch_size)}: too small for network {name!r}; "
            f"expected every side >= {smallest} voxels"
        )


def build_network(name: str, **kwargs: Any) -> nn.Module:
    """Build the network registered as ``name`` (1-channel 3D patch in, one logit out)."""
    return network_entry(name).builder(**kwargs)


def _with_weights(model: nn.Module, weights: str | None) -> nn.Module:
    return load_local_weights(model, weights) if weights else model


# --- the compact CPU default ------------------------------------------------------------------
def _compact_min_patch_size(stem_stride: int, channels: Sequence[int], convs_per_stage: Any,
                            first_stage_convs: Any) -> int:
    # Checked with the patch size, before training starts, so that a bad value is one line.
    try:
        CompactCNN.stage_convs(channels, convs_per_stage, first_stage_convs)
    except ValueError as error:
        raise ValueError(f"model.network.{error}") from None
    return CompactCNN.min_patch_size(stem_stride, channels)


@register_network(
    "compact",
    "Compact CNN with a strided stem; the CPU default.",
    min_patch_size=lambda stem_stride=2, channels=(16, 32, 64, 128), convs_per_stage=2,
    first_stage_convs=None, **_: _compact_min_patch_size(stem_stride, channels, convs_per_stage,
                                                      first_stage_convs),
)
def _compact(weights: str | None = None, **kwargs: Any) -> nn.Module:
    return _with_weights(CompactCNN(in_channels=1, **kwargs), weights)


# --- MONAI 3D networks ------------------------------------------------------------------------
def _monai_resnet(depth: int) -> Callable[..., nn.Module]:
    factory = getattr(monai_nets, f"resnet{depth}")

    def build(weights: str | None = None, **kwargs: Any) -> nn.Module:
        # conv1 stride 2 + max-pool + three stride-2 stages: the input shrinks 32-fold.
        kwargs.setdefault("conv1_t_stride", 2)
        model = factory(spatial_dims=3, n_input_channels=1, num_classes=1, **kwargs)
        return _with_weights(model, weights)

    return build


for _depth in (10, 18, 34):
    register_network(
        f"resnet{_depth}", f"MONAI 3D ResNet-{_depth}.", min_patch_size=16
    )(_monai_resnet(_depth))


@register_network("densenet121", "MONAI 3D DenseNet-121.", min_patch_size=32)
def _densenet121(weights: str | None = None, **kwargs: Any) -> nn.Module:
    model = monai_nets.DenseNet121(spatial_dims=3, in_channels=1, out_channels=1, **kwargs)
    return _with_weights(model, weights)


@register_network("seresnet50", "MONAI 3D SE-ResNet-50.", min_patch_size=16)
def _seresnet50(weights: str | None = None, **kwargs: Any) -> nn.Module:
    model = monai_nets.SEResNet50(spatial_dims=3, in_channels=1, num_classes=1, **kwargs)
    return _with_weights(model, weights)


@register_network("efficientnet_b0", "MONAI 3D EfficientNet-B0.", min_patch_size=32)
def _efficientnet_b0(weights: str | None = None, **kwargs: Any) -> nn.Module:
    model = monai_nets.EfficientNetBN(
        "efficientnet-b0", pretrained=False, spatial_dims=3, in_channels=1, num_classes=1,
        **kwargs,
    )
    return _with_weights(model, weights)


# --- torchvision video ResNets (3D), adapted to one channel and one logit ------------------------
def _video_resnet(name: str) -> Callable[..., nn.Module]:
    def build(weights: str | None = None, **kwargs: Any) -> nn.Module:
        model = getattr(tv_video, name)(weights=None, **kwargs)
        if weights:  # torchvision checkpoints are RGB with 400 classes: adapt after loading
            load_local_weights(model, weights)
        return replace_linear_head(replace_first_conv(model, 1), "fc", 1)

    return build


for _name, _title in (("r3d_18", "R3D-18"), ("mc3_18", "MC3-18"), ("r2plus1d_18", "R(2+1)D-18")):
    register_network(
        _name, f"torchvision video {_title} (3D convolutions), 1 channel.", min_patch_size=16
    )(_video_resnet(_name))


# --- 2.5D: orthogonal slices into a torchvision 2D backbone --------------------------------------
@register_network(
    "resnet18_2p5d", "torchvision ResNet-18 on orthogonal slices (2.5D).", min_patch_size=16
)
def _resnet18_2p5d(
    weights: str | None = None, slices_per_axis: int = 1, **kwargs: Any
) -> nn.Module:
    backbone = tv_models.resnet18(weights=None, **kwargs)
    if weights:
        load_local_weights(backbone, weights)
    backbone = replace_first_conv(backbone, 3 * slices_per_axis)
    return SliceStackNet(replace_linear_head(backbone, "fc", 1), slices_per_axis)


@register_network(
    "efficientnet_b0_2p5d", "torchvision EfficientNet-B0 on orthogonal slices (2.5D).",
    min_patch_size=16,
)
def _efficientnet_b0_2p5d(
    weights: str | None = None, slices_per_axis: int = 1, **kwargs: Any
) -> nn.Module:
    backbone = tv_models.efficientnet_b0(weights=None, **kwargs)
    if weights:
        load_local_weights(backbone, weights)
    backbone = replace_first_conv(backbone, 3 * slices_per_axis)
    return SliceStackNet(replace_linear_head(backbone, "classifier.1", 1), slices_per_axis)
