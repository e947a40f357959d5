"""Grad-CAM: the target layer is found generically and the maps point at what drove the logit."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from calcinet.evaluation.gradcam import gradcam_maps, last_conv_layer
from calcinet.models.networks import build_network


class _Brightness(nn.Module):
    """logit = mean(relu(x)): the malignant evidence is exactly where the image is bright."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv3d(1, 1, kernel_size=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.head = nn.Linear(1, 1)
        with torch.no_grad():
            for layer in (self.features[0], self.head):
                layer.weight.fill_(1.0)
                layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


def test_maps_highlight_the_evidence_for_the_predicted_class() -> None:
    image = torch.zeros(1, 1, 12, 12, 12)
    image[0, 0, 1:4, 8:11, 2:5] = 1.0
    network = _Brightness()
    maps, layer = gradcam_maps(network, torch.cat([image, image]), [1, 0])
    assert layer == "features.0" and maps.shape == (2, 12, 12, 12)
    malignant, benign = maps
    assert malignant.max() == 1.0 and malignant.min() == 0.0
    assert np.unravel_index(malignant.argmax(), malignant.shape)[0] in range(1, 4)
    assert malignant[1:4, 8:11, 2:5].mean() > 5 * malignant[6:, :6, 6:].mean()
    # Nothing in the image argues for "benign": the benign map is empty.
    assert benign.max() == 0.0
    # MONAI's hooks stay on a copy; the network itself is untouched.
    assert not network.features[0]._backward_hooks and not network.features[0]._forward_hooks


def test_last_convolution_of_registry_networks() -> None:
    network = build_network("compact", channels=[4, 8], dropout=0.0).eval()
    assert last_conv_layer(network, torch.zeros(1, 1, 16, 16, 16)) == "stages.1.1.conv"
