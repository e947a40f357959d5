"""The network factory: one contract for every registered network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from calcinet.models.networks import (
    available_networks,
    build_network,
    check_patch_size,
    min_patch_size,
)
from tests.helpers import compose_config


@pytest.mark.parametrize("name", available_networks())
def test_contract_one_channel_in_one_logit_out(name: str) -> None:
    torch.manual_seed(0)
    net = build_network(name).eval()
    side = max(32, min_patch_size(name))
    with torch.no_grad():
        out = net(torch.randn(2, 1, side, side, side))
    assert out.shape == (2, 1)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", available_networks())
def test_smallest_accepted_patch_runs(name: str) -> None:
    side = min_patch_size(name)
    net = build_network(name).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, side, side, side)).shape == (1, 1)


def test_compact_is_small_and_its_minimum_follows_its_shape() -> None:
    net = build_network("compact")
    params = sum(p.numel() for p in net.parameters())
    assert 500_000 < params < 1_500_000
    assert min_patch_size("compact") == 32
    assert min_patch_size("compact", stem_stride=1, channels=[8, 16]) == 4


def test_compact_takes_its_first_stage_convolutions_apart(tmp_path: Path) -> None:
    net = build_network("compact", channels=[8, 16, 32], convs_per_stage=3, first_stage_convs=1)
    convs = [
        [m for m in stage.modules() if isinstance(m, torch.nn.Conv3d)] for stage in net.stages
    ]
    assert [len(c) for c in convs] == [1, 3, 3]
    # Hand count: stem 1->8, then 8->8, 8->16, 16->16, 16->16, 16->32, 32->32, 32->32, each
    # 27*in*out weights + out biases, plus two BatchNorm parameters per channel after each
    # convolution and the 32 + 1 of the linear head.
    pairs = [(1, 8), (8, 8), (8, 16), (16, 16), (16, 16), (16, 32), (32, 32), (32, 32)]
    conv_params = sum(27 * i * o + o for i, o in pairs)
    norm_params = 2 * sum(o for _, o in pairs)
    assert sum(p.numel() for p in net.parameters()) == conv_params + norm_params + 33
    with torch.no_grad():
        assert net(torch.randn(2, 1, 16, 16, 16)).shape == (2, 1)

    def count(**kwargs) -> list[int]:
        return [len([m for m in stage.modules() if isinstance(m, torch.nn.Conv3d)])
                for stage in build_network("compact", **kwargs).stages]

    # Without first_stage_convs (every checkpoint written before it existed records none) each
    # stage gets convs_per_stage, so such a checkpoint loads as the network it was; the default
    # recipe's config asks for one in the first stage, whatever the number of stages.
    assert count() == [2, 2, 2, 2] and count(first_stage_convs=None) == [2, 2, 2, 2]
    assert count(first_stage_convs=1) == [1, 2, 2, 2]
    assert count(first_stage_convs=1, channels=[8, 16]) == [1, 2]
    recipe = OmegaConf.to_container(compose_config("train", [], tmp_path / "run").model.network)
    assert recipe["first_stage_convs"] == 1 and count(**{k: v for k, v in recipe.items()
                                                         if k != "name"}) == [1, 2, 2, 2]


@pytest.mark.parametrize("key, value, expected", [
    ("convs_per_stage", 0, "a whole number"), ("first_stage_convs", 0, "a whole number"),
    ("convs_per_stage", [1, 2], "a whole number"), ("convs_per_stage", None, "a whole number"),
    ("channels", [], "the feature channels"), ("channels", [8, 0], "the feature channels"),
    ("channels", [8, -4], "the feature channels"), ("channels", 16, "the feature channels"),
])
def test_a_bad_compact_value_names_the_key(key, value, expected) -> None:
    with pytest.raises(ValueError, match=rf"model\.network\.{key}=.*: expected {expected}"):
        check_patch_size("compact", [48, 48, 48], **{key: value})


# Scripting every network, with outputs identical to eager, is tested through the exporter
# (tests/export/test_networks.py).
def test_the_zoo_has_the_documented_networks() -> None:
    assert set(available_networks()) == {
        "compact", "resnet10", "resnet18", "resnet34", "densenet121", "seresnet50",
        "efficientnet_b0", "r3d_18", "mc3_18", "r2plus1d_18", "resnet18_2p5d",
        "efficientnet_b0_2p5d",
    }
    assert min_patch_size("densenet121") == 32 and min_patch_size("efficientnet_b0") == 32


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"model.network.name='vgg'.*compact.*resnet18, "):
        build_network("vgg")


def test_too_small_patch_names_the_value_and_the_minimum() -> None:
    with pytest.raises(ValueError, match=r"data.patch_size=\[16, 16, 16\].*>= 32"):
        check_patch_size("compact", [16, 16, 16])
    check_patch_size("compact", [32, 32, 32])
    check_patch_size("compact", [16, 16, 16], channels=[8, 16])


def test_compact_learns_a_separable_toy_problem() -> None:
    """Bright-centred vs dark-centred cubes: a few steps must drive the loss well down."""
    torch.manual_seed(0)
    net = build_network("compact", channels=[8, 16], dropout=0.0)
    x = torch.rand(32, 1, 16, 16, 16) * 0.1
    y = (torch.arange(32) % 2).float()
    x[y == 1, :, 6:10, 6:10, 6:10] += 0.9
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x).squeeze(1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
