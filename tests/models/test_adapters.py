"""Adapting off-the-shelf networks: one input channel, one logit, local pretrained weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from calcinet.models.adapters import replace_first_conv, replace_linear_head
from calcinet.models.networks import build_network
from calcinet.models.slices import OrthogonalSlices


def test_grey_conv_equals_rgb_conv_on_a_replicated_grey_image() -> None:
    torch.manual_seed(0)
    rgb = torchvision.models.resnet18(weights=None).eval()
    grey = replace_first_conv(torchvision.models.resnet18(weights=None), 1).eval()
    grey.load_state_dict({k: v for k, v in rgb.state_dict().items() if k != "conv1.weight"},
                         strict=False)
    with torch.no_grad():
        grey.conv1.weight.copy_(rgb.conv1.weight.sum(1, keepdim=True))
        x = torch.randn(2, 1, 32, 32)
        torch.testing.assert_close(grey.conv1(x), rgb.conv1(x.expand(-1, 3, -1, -1)))


def test_replace_first_conv_keeps_the_summed_kernel() -> None:
    conv = nn.Sequential(nn.Conv3d(3, 4, 3, bias=True))
    weight = conv[0].weight.detach().clone()
    adapted = replace_first_conv(conv, 1)
    assert adapted[0].in_channels == 1
    torch.testing.assert_close(adapted[0].weight, weight.sum(1, keepdim=True))


def test_replace_linear_head_requires_a_linear() -> None:
    model = torchvision.models.efficientnet_b0(weights=None)
    replace_linear_head(model, "classifier.1", 1)
    assert model.classifier[1].out_features == 1
    with pytest.raises(TypeError, match="classifier.0: expected nn.Linear, found Dropout"):
        replace_linear_head(model, "classifier.0", 1)


def test_local_rgb_weights_load_into_the_2p5d_network(tmp_path: Path) -> None:
    torch.manual_seed(1)
    imagenet_like = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(imagenet_like.state_dict(), path)
    net = build_network("resnet18_2p5d", weights=str(path))
    backbone = net.backbone
    first_block = imagenet_like.layer1[0].conv1.weight
    torch.testing.assert_close(backbone.layer1[0].conv1.weight, first_block)
    # RGB first conv summed to grey, then spread over the 3 slice channels.
    expected = imagenet_like.conv1.weight.sum(1, keepdim=True).expand(-1, 3, -1, -1) / 3
    torch.testing.assert_close(backbone.conv1.weight, expected)
    assert backbone.fc.out_features == 1


def test_local_weights_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model.network.weights='.*missing.pth': no such"):
        build_network("compact", weights=str(tmp_path / "missing.pth"))
    path = tmp_path / "other.pth"
    torch.save({"unrelated.weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="no tensor matches CompactCNN"):
        build_network("compact", weights=str(path))


def test_a_compact_checkpoint_round_trips_through_local_weights(tmp_path: Path) -> None:
    torch.manual_seed(2)
    trained = build_network("compact", channels=[8, 16]).eval()
    path = tmp_path / "compact.pt"
    torch.save({"state_dict": trained.state_dict()}, path)
    loaded = build_network("compact", channels=[8, 16], weights=str(path)).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), trained(x))


def test_orthogonal_slices_pick_the_central_planes() -> None:
    volume = torch.arange(4 * 4 * 4, dtype=torch.float32).reshape(1, 1, 4, 4, 4)
    planes = OrthogonalSlices(1)(volume)
    assert planes.shape == (1, 3, 4, 4)
    torch.testing.assert_close(planes[0, 0], volume[0, 0, 2])
    torch.testing.assert_close(planes[0, 1], volume[0, 0, :, 2])
    torch.testing.assert_close(planes[0, 2], volume[0, 0, :, :, 2])
    assert OrthogonalSlices(3)(volume).shape == (1, 9, 4, 4)
    anisotropic = torch.randn(2, 1, 8, 6, 4)
    assert OrthogonalSlices(1)(anisotropic).shape == (2, 3, 8, 8)
