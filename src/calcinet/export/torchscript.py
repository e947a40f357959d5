"""TorchScript: script the HU model (trace where scripting is impossible) and save it.

The saved model is the plain scripted module, portable across devices. It is not frozen or
passed through ``torch.jit.optimize_for_inference``: PyTorch documents that the latter bakes in
machine-specific kernels and that serialising its result is not supported, so
:func:`calcinet.inference.load_model` applies it at load time instead. :func:`save_torchscript`
writes to the path it is given; the exporter gives it a temporary file and renames that onto the
output (:mod:`calcinet.files`), so an output is never half-written.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from calcinet.export.card import CARD_EXTRA_FILE, render
from calcinet.inference.metadata import METADATA_FILE, dumps
from calcinet.inference.model import quiet_torchscript


def to_torchscript(model: nn.Module, example: torch.Tensor) -> tuple[torch.jit.ScriptModule, str]:
    """``(scripted module, "script")``, or ``(traced module, "trace: <why scripting failed>")``."""
    model = model.eval()
    with quiet_torchscript():
        try:
            return torch.jit.script(model), "script"
        except Exception as error:  # the TorchScript compiler raises many types
            reason = (
                str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            )
        with torch.no_grad(), warnings.catch_warnings():
            # Python-level checks (the input shape) run once while tracing; that is expected.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(model, example, check_trace=True)
    return traced, f"trace (scripting failed: {reason})"


def save_torchscript(module: torch.jit.ScriptModule, path: Path, metadata: dict | None) -> None:
    """Write ``module`` with ``metadata.json`` and the model card (``model_card.md``) as extra
    files to ``path``."""
    extra = {}
    if metadata is not None:
        extra = {METADATA_FILE: dumps(metadata), CARD_EXTRA_FILE: render(metadata)}
    with quiet_torchscript():
        torch.jit.save(module, str(path), _extra_files=extra)
