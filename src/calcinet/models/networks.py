"""One factory for every network: ``build_network(name, **kwargs)``.

Every network has the same contract: a float tensor ``[N, 1, X, Y, Z]`` (one CT channel, already
windowed) in, ``[N, 1]`` malignancy logits out. Adding a network is adding one registry entry
with the smallest patch side it accepts, so that a patch that is too small is refused before
training starts instead of failing deep inside a forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from monai.networks import nets as monai_nets
from torch import nn

from calcinet.models.compact import CompactCNN


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


@register_network(
    "compact",
    "Compact CNN with a strided stem; the CPU default.",
    min_patch_size=lambda stem_stride=2, channels=(32, 64, 128), **_: CompactCNN.min_patch_size(
        stem_stride, channels
    ),
)
def _compact(**kwargs: Any) -> nn.Module:
    return CompactCNN(in_channels=1, **kwargs)


def _monai_resnet(depth: int) -> Callable[..., nn.Module]:
    factory = getattr(monai_nets, f"resnet{depth}")

    def build(**kwargs: Any) -> nn.Module:
        # conv1 stride 2 + max-pool + three stride-2 stages: the input shrinks 32-fold.
        kwargs.setdefault("conv1_t_stride", 2)
        return factory(spatial_dims=3, n_input_channels=1, num_classes=1, **kwargs)

    return build


for _depth in (10, 18):
    register_network(
        f"resnet{_depth}",
        f"MONAI 3D ResNet-{_depth} (random initialisation).",
        min_patch_size=16,
    )(_monai_resnet(_depth))
