"""Fallbacks: trace where scripting is impossible, a clear reason where torch.export fails."""

from __future__ import annotations

import pytest
import torch

from calcinet.export.torch_export import ProgramExportError, export_program
from calcinet.export.torchscript import to_torchscript
from calcinet.export.wrapper import HUClassifier


class _Unscriptable(torch.nn.Module):
    """A forward TorchScript cannot compile (a generator expression), though tracing can."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(x[:, i : i + 1].mean(dim=(2, 3, 4)) for i in range(x.shape[1]))


class _DataDependent(torch.nn.Module):
    """Branches on a tensor value, which torch.export cannot capture."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0.5:
            return x.mean(dim=(2, 3, 4))
        return -x.mean(dim=(2, 3, 4))


def test_unscriptable_network_is_traced_and_says_why() -> None:
    model = HUClassifier(_Unscriptable(), (-200, 1800), (8, 8, 8)).eval()
    hu = torch.rand(2, 1, 8, 8, 8) * 2000 - 200
    module, method = to_torchscript(model, hu)
    assert method.startswith("trace (scripting failed: ")
    assert torch.allclose(module(hu), model(hu))


def test_data_dependent_network_has_no_program_and_a_reason() -> None:
    model = HUClassifier(_DataDependent(), (-200, 1800), (8, 8, 8)).eval()
    with pytest.raises(ProgramExportError) as caught:
        export_program(model, torch.rand(2, 1, 8, 8, 8))
    message = str(caught.value)
    assert message.startswith("GuardOnDataDependentSymNode: Could not guard on data-dependent "
                              "expression")
    assert "\n" not in message
