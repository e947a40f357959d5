"""2.5D: a 2D ImageNet-style backbone fed with orthogonal slices stacked as channels."""

from __future__ import annotations

import torch
from torch import nn


class OrthogonalSlices(nn.Module):
    """``[N, 1, X, Y, Z]`` -> ``[N, 3 * k, S, S]``: ``k`` slices around the centre on each axis.

    The three orthogonal planes (YZ, XZ, XY) are resampled to a common ``S x S`` size (the
    largest side) so that anisotropic patches stack too; this is the MedMNIST "2.5D" baseline.
    """

    def __init__(self, slices_per_axis: int = 1, spacing: int = 2) -> None:
        super().__init__()
        if slices_per_axis < 1:
            raise ValueError(f"slices_per_axis={slices_per_axis}: expected >= 1")
        self.slices_per_axis = slices_per_axis
        self.spacing = spacing

    def _offsets(self) -> list[int]:
        half = (self.slices_per_axis - 1) // 2
        return [(i - half) * self.spacing for i in range(self.slices_per_axis)]

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        n, _, sx, sy, sz = volume.shape
        size = max(sx, max(sy, sz))
        planes: list[torch.Tensor] = []
        for offset in self._offsets():
            ix = min(max(sx // 2 + offset, 0), sx - 1)
            iy = min(max(sy // 2 + offset, 0), sy - 1)
            iz = min(max(sz // 2 + offset, 0), sz - 1)
            for plane in (volume[:, :, ix, :, :], volume[:, :, :, iy, :], volume[:, :, :, :, iz]):
                if plane.shape[-2] != size or plane.shape[-1] != size:
                    plane = nn.functional.interpolate(
                        plane, size=[size, size], mode="bilinear", align_corners=False
                    )
                planes.append(plane)
        return torch.cat(planes, dim=1)


class SliceStackNet(nn.Module):
    """Orthogonal slices -> 2D backbone -> one logit."""

    def __init__(self, backbone: nn.Module, slices_per_axis: int = 1) -> None:
        super().__init__()
        self.slices = OrthogonalSlices(slices_per_axis)
        self.backbone = backbone

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.slices(volume))
