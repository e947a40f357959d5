"""Every registered network exports (TorchScript always; torch.export where it can)."""

from __future__ import annotations

from pathlib import Path

import pytest

from calcinet.export import export_checkpoint
from calcinet.models.networks import available_networks, min_patch_size
from tests.helpers import quick_checkpoint

# torch.export takes 10-25 s per large network on two CPU cores; it is exercised on one network of
# each family (the TorchScript file, with its fresh-process parity check, on every network).
WITH_PROGRAM = {"compact", "resnet10", "r3d_18", "resnet18_2p5d"}


@pytest.mark.slow
@pytest.mark.parametrize("name", available_networks())
def test_every_network_exports_with_parity(name: str, tmp_path: Path) -> None:
    side = min_patch_size(name)  # the smallest patch keeps 12 exports quick
    checkpoint = quick_checkpoint(tmp_path / "checkpoint", {"name": name}, patch_size=(side,) * 3)
    with_program = name in WITH_PROGRAM
    result = export_checkpoint(checkpoint, tmp_path / "model.ts", torch_export=with_program)
    parity = result.metadata["export"]["parity"]
    assert parity["torchscript_passed"], parity
    assert result.metadata["network"]["name"] == name
    if not with_program:
        assert result.program is None
    elif result.program is None:  # allowed, but the reason must be said
        assert any(note.startswith("no .pt2") for note in result.notes), result.notes
    else:
        assert parity["torch_export_passed"], parity
