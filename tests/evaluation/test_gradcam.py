"""Grad-CAM: the default target layer keeps a readable map, the maps have the patch's shape and
point at what drove the logit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from calcinet.evaluation import EvaluationError
from calcinet.evaluation.gradcam import default_layer, feature_maps, gradcam_maps
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


class _Gate(nn.Module):
    """Keeps the feature map inside a box of its own voxels and zeroes the rest."""

    def __init__(self, shape: tuple[int, int, int], box: tuple[slice, slice, slice]) -> None:
        super().__init__()
        mask = torch.zeros(1, 1, *shape)
        mask[(0, 0, *box)] = 1.0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


class _RegionMean(nn.Module):
    """24^3 patch -> conv + ReLU -> max-pool to 12^3 -> keep one box -> mean -> logit: the
    output is the mean brightness of one region (the box, 2x larger in the patch), whatever
    lies elsewhere."""

    def __init__(self, box: tuple[slice, slice, slice]) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool3d(2))
        self.gate = _Gate((12, 12, 12), box)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.head = nn.Linear(2, 1)
        with torch.no_grad():
            self.features[0].weight.fill_(1.0 / 27)
            self.features[0].bias.zero_()
            self.head.weight.fill_(1.0)
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.gate(self.features(x))).flatten(1))


def test_maps_highlight_the_evidence_for_the_predicted_class() -> None:
    image = torch.zeros(1, 1, 12, 12, 12)
    image[0, 0, 1:4, 8:11, 2:5] = 1.0
    network = _Brightness()
    maps, layer = gradcam_maps(network, torch.cat([image, image]), [1, 0])
    assert layer == "features" and maps.shape == (2, 12, 12, 12)
    malignant, benign = maps
    assert malignant.max() == 1.0 and malignant.min() == 0.0
    assert np.unravel_index(malignant.argmax(), malignant.shape)[0] in range(1, 4)
    assert malignant[1:4, 8:11, 2:5].mean() > 5 * malignant[6:, :6, 6:].mean()
    # Nothing in the image argues for "benign": the benign map is empty.
    assert benign.max() == 0.0
    # MONAI's hooks stay on a copy; the network itself is untouched.
    assert not network.features[0]._backward_hooks and not network.features[0]._forward_hooks


def test_map_has_the_patch_shape_and_peaks_on_the_region_that_drives_the_logit() -> None:
    # The region the model reads: x 2-5, y 7-10, z 1-3 of the 12^3 map, i.e. x 4-11, y 14-21,
    # z 2-7 of the patch. Two equally bright blobs: one inside it, one outside.
    box = (slice(2, 6), slice(7, 11), slice(1, 4))
    image = torch.zeros(1, 1, 24, 24, 24)
    image[0, 0, 5:10, 15:20, 3:7] = 1.0  # inside: drives the logit
    image[0, 0, 15:20, 3:8, 15:20] = 1.0  # outside: ignored by the model
    network = _RegionMean(box)
    assert default_layer(network, image) == "gate"  # the deepest 12^3 map
    maps, layer = gradcam_maps(network, image, [1])
    heat = maps[0]
    assert layer == "gate" and heat.shape == (24, 24, 24)
    peak = np.unravel_index(heat.argmax(), heat.shape)
    assert 4 <= peak[0] < 12 and 14 <= peak[1] < 22 and 2 <= peak[2] < 8, peak
    assert heat[5:10, 15:20, 3:7].mean() > 0.5
    assert heat[15:20, 3:8, 15:20].max() < 0.05


def test_a_named_layer_is_used_and_an_unknown_one_refused() -> None:
    image = torch.rand(1, 1, 24, 24, 24)
    network = _RegionMean((slice(2, 6), slice(7, 11), slice(1, 4)))
    maps, layer = gradcam_maps(network, image, [1], layer="features.1")
    assert layer == "features.1" and maps.shape == (1, 24, 24, 24)
    with pytest.raises(EvaluationError, match=r"gradcam.layer='features.9': no such module"):
        gradcam_maps(network, image, [1], layer="features.9")


def test_default_layer_of_the_compact_network_keeps_a_12_cube_map() -> None:
    network = build_network("compact", dropout=0.0).eval()
    patch = torch.rand(1, 1, 48, 48, 48)
    maps = dict(feature_maps(network, patch))
    # The last convolution sees 3^3; the default is the deepest 12^3 map (second stage).
    assert maps["stages.3.1"] == (3, 3, 3)
    assert default_layer(network, patch) == "stages.1.1" and maps["stages.1.1"] == (12, 12, 12)
    heat, layer = gradcam_maps(network, patch, [1])
    assert layer == "stages.1.1" and heat.shape == (1, 48, 48, 48)


def test_small_patches_take_the_finest_map_there_is() -> None:
    network = build_network("compact", channels=[4, 8], dropout=0.0).eval()
    patch = torch.zeros(1, 1, 16, 16, 16)  # stem -> 8^3: no map reaches 12^3
    assert default_layer(network, patch) == "stages.0.1"
    assert dict(feature_maps(network, patch))["stages.0.1"] == (8, 8, 8)


def test_a_2p5d_network_has_no_3d_map() -> None:
    network = build_network("resnet18_2p5d").eval()
    with pytest.raises(ValueError, match="no 3D feature map"):
        default_layer(network, torch.zeros(1, 1, 32, 32, 32))
