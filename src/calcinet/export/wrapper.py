"""The module that is exported: raw HU in, malignancy probability out.

Windowing and the sigmoid live inside the model, so a consumer cannot get the preprocessing
wrong: it only has to cut a patch in HU at the right spacing and orientation (metadata.json says
which).
"""

from collections.abc import Sequence

import torch
from torch import nn


def window_hu(hu: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Clip-and-scale ``[low, high]`` HU to ``[0, 1]``, the same operations in the same order as
    MONAI's ``ScaleIntensityRange(a_min=low, a_max=high, b_min=0, b_max=1, clip=True)``."""
    return torch.clamp((hu - low) / (high - low), 0.0, 1.0)


class HUClassifier(nn.Module):
    """``[N, 1, X, Y, Z]`` float32 HU (RAS, the training spacing) -> ``[N]`` P(malignant).

    Args:
        network: the trained network (windowed patch in, ``[N, 1]`` logit out).
        hu_window: ``(low, high)`` HU of the training window.
        patch_size: ``(X, Y, Z)`` the network was trained on; other shapes are refused, since
            the network would run on them but its output would mean something else.
        temperature: the logit is divided by it before the sigmoid (the calibration fitted on
            the validation split; 1.0: none).
    """

    # Declared on the class: TorchScript reads attribute types here (this module therefore avoids
    # `from __future__ import annotations`, which would turn them into strings).
    patch_size: list[int]

    def __init__(
        self,
        network: nn.Module,
        hu_window: Sequence[float],
        patch_size: Sequence[int],
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.network = network
        self.hu_low = float(hu_window[0])
        self.hu_high = float(hu_window[1])
        self.patch_size = [int(s) for s in patch_size]
        self.temperature = float(temperature)

    def forward(self, hu: torch.Tensor) -> torch.Tensor:
        if hu.dim() != 5 or hu.shape[1] != 1 or list(hu.shape[2:]) != self.patch_size:
            raise ValueError(
                "expected float32 HU patches of shape [N, 1, "
                + ", ".join([str(s) for s in self.patch_size])
                + "], got "
                + str(list(hu.shape))
            )
        logit = self.network(window_hu(hu, self.hu_low, self.hu_high)).squeeze(1)
        return torch.sigmoid(logit.float() / self.temperature)
