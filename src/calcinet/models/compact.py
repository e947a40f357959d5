"""The compact 3D CNN that is the CPU default.

Full-resolution first layers dominate the cost of a 3D CNN on a CPU, so the network starts with a
strided convolution (the "stem") and then runs a few double-convolution stages, each followed by
max-pooling, before global average pooling and one linear unit: the malignancy logit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn


class CompactCNN(nn.Module):
    """Stem (strided conv) -> [conv, conv, max-pool] x len(channels) -> global pool -> logit.

    Args:
        in_channels: image channels (1 for CT).
        channels: feature channels of each stage; the stem produces ``channels[0]``.
        stem_stride: stride of the stem convolution (2 halves every spatial side at once).
        convs_per_stage: 3x3x3 convolutions (+ norm + activation) in each stage.
        first_stage_convs: those of the first stage instead (``None``: ``convs_per_stage``, the
            network of every checkpoint written before this option existed; the default recipe,
            ``conf/model/compact.yaml``, sets 1). The first stage runs at the highest resolution
            (24^3 after the stem for a 48^3 patch): with two convolutions it holds 191 M of the
            network's 322 M multiply-adds per patch (hand count, channels 16-32-64-128), with
            one 95 M of 227 M.
        dropout: dropout before the final linear layer.
        norm: MONAI norm name, e.g. ``"batch"`` or ``"instance"``.
        act: MONAI activation name.
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128),
        stem_stride: int = 2,
        convs_per_stage: int = 2,
        first_stage_convs: int | None = None,
        dropout: float = 0.2,
        norm: str = "batch",
        act: str = "relu",
    ) -> None:
        super().__init__()
        convs = self.stage_convs(channels, convs_per_stage, first_stage_convs)
        channels = [int(c) for c in channels]
        self.stem = Convolution(
            3, in_channels, channels[0], strides=stem_stride, kernel_size=3, norm=norm, act=act
        )
        stages: list[nn.Module] = []
        previous = channels[0]
        for width, count in zip(channels, convs, strict=True):
            layers: list[nn.Module] = []
            for _ in range(count):
                layers.append(Convolution(3, previous, width, kernel_size=3, norm=norm, act=act))
                previous = width
            layers.append(nn.MaxPool3d(kernel_size=2))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(previous, 1)

    @staticmethod
    def stage_convs(channels: Sequence[int], convs_per_stage: int = 2,
                    first_stage_convs: int | None = None) -> list[int]:
        """The number of convolutions of each stage (one per entry of ``channels``).

        Raises:
            ValueError: ``channels`` is not one or more positive whole numbers, or a count is not
                a whole number >= 1 (the message names the argument).
        """
        if isinstance(channels, str | int) or not channels or not all(
                isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels):
            raise ValueError(f"channels={channels!r}: expected the feature channels of each "
                             "stage, one or more positive whole numbers")
        for name, count, null in (("convs_per_stage", convs_per_stage, ""),
                                  ("first_stage_convs", first_stage_convs, " (or null)")):
            if (count is not None or not null) and (
                    isinstance(count, bool) or not isinstance(count, int) or count < 1):
                raise ValueError(f"{name}={count!r}: expected a whole number of convolutions, "
                                 f"1 or more{null}")
        first = convs_per_stage if first_stage_convs is None else first_stage_convs
        return [first] + [convs_per_stage] * (len(channels) - 1)

    @staticmethod
    def min_patch_size(stem_stride: int = 2, channels: Sequence[int] = (16, 32, 64, 128)) -> int:
        """Smallest cube side that still leaves one voxel after the stem and every pooling."""
        return int(stem_stride) * 2 ** len(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        x = torch.flatten(self.pool(x), 1)
        return self.classifier(self.dropout(x))
