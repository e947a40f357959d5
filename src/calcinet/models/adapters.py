"""Fitting off-the-shelf networks to the calcinet contract (1 channel in, 1 logit out)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def replace_first_conv(model: nn.Module, in_channels: int = 1) -> nn.Module:
    """Swap the first Conv2d/Conv3d of ``model`` for one with ``in_channels`` inputs.

    The new kernel is the old one summed over its input channels, so RGB weights (random or
    pretrained) become their grey-level equivalent.
    """
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d | nn.Conv3d):
                conv_cls = type(child)
                new = conv_cls(
                    in_channels, child.out_channels, kernel_size=child.kernel_size,
                    stride=child.stride, padding=child.padding, dilation=child.dilation,
                    groups=1, bias=child.bias is not None,
                )
                with torch.no_grad():
                    summed = child.weight.sum(dim=1, keepdim=True)
                    new.weight.copy_(summed.expand_as(new.weight) / in_channels)
                    if child.bias is not None:
                        new.bias.copy_(child.bias)
                setattr(parent, name, new)
                return model
    raise ValueError(f"{type(model).__name__}: no convolution to adapt to {in_channels} channel(s)")


def replace_linear_head(model: nn.Module, attribute: str, out_features: int = 1) -> nn.Module:
    """Replace the final ``nn.Linear`` found at ``attribute`` (dotted path) by a new one."""
    *path, last = attribute.split(".")
    parent = model
    for part in path:
        parent = getattr(parent, part) if not part.isdigit() else parent[int(part)]
    old = parent[int(last)] if last.isdigit() else getattr(parent, last)
    if not isinstance(old, nn.Linear):
        raise TypeError(f"{attribute}: expected nn.Linear, found {type(old).__name__}")
    new = nn.Linear(old.in_features, out_features)
    if last.isdigit():
        parent[int(last)] = new
    else:
        setattr(parent, last, new)
    return model


def load_local_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load pretrained weights from a local file (no downloads), adapting what can be adapted.

    Accepts a plain state dict or a dict holding one under ``state_dict`` / ``model``. A first
    convolution trained on RGB is summed to one channel; heads whose shape differs (e.g. 1000
    ImageNet classes) are left at their initialisation. Missing file or no matching tensor is an
    error naming the path.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.network.weights={str(path)!r}: no such file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    own = model.state_dict()
    usable = {}
    for key, tensor in state.items():
        key = key.removeprefix("module.")
        if key not in own:
            continue
        target = own[key]
        if tensor.shape == target.shape:
            usable[key] = tensor
        elif tensor.dim() == target.dim() >= 4 and tensor.shape[1] != target.shape[1]:
            usable[key] = tensor.sum(dim=1, keepdim=True).expand_as(target) / target.shape[1]
    if not usable:
        raise ValueError(
            f"model.network.weights={str(path)!r}: no tensor matches {type(model).__name__}"
        )
    model.load_state_dict(usable, strict=False)
    return model
