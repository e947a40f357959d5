"""Fixtures of the inference tests: a real exported model, and a position-sensitive probe model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from calcinet.export import ExportResult, HUClassifier
from calcinet.export.checkpoint import CheckpointInfo
from calcinet.export.metadata import build_metadata
from calcinet.export.torchscript import save_torchscript
from tests.export.exports import export_tiny

PATCH = (24, 24, 24)
SPACING = (1.5, 1.5, 1.5)
WINDOW = (-200.0, 1800.0)


@pytest.fixture(scope="session")
def tiny_export(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    """The session's tiny checkpoint exported to ``model.ts`` + ``model.pt2``."""
    return export_tiny(tiny_checkpoint, tmp_path_factory)


class _Linear(torch.nn.Module):
    """One weight per voxel: any shift or flip of the patch changes the logit clearly."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randn(1, 1, *PATCH, generator=generator) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).sum(dim=(1, 2, 3, 4)).unsqueeze(1) - 0.5


@pytest.fixture(scope="session")
def probe_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TorchScript file in the export format whose output depends on every voxel's position."""
    folder = tmp_path_factory.mktemp("probe")
    checkpoint = folder / "probe.ckpt"
    checkpoint.write_bytes(b"probe")
    info = CheckpointInfo(
        path=checkpoint,
        network={"name": "probe"},
        patch_size=list(PATCH),
        spacing=list(SPACING),
        hu_window=list(WINDOW),
        class_names=["benign", "malignant"],
        operating_point="youden",
        target_sensitivity=0.95,
        run={},
    )
    model = torch.jit.script(HUClassifier(_Linear(), WINDOW, PATCH).eval())
    path = folder / "probe.ts"
    save_torchscript(model, path, build_metadata(info, (0.5, 0.3), "script"))
    return path
