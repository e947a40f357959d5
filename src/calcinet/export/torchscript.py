"""TorchScript: script the HU model (trace where scripting is impossible) and save it atomically.

The saved model is the plain scripted module, portable across devices. It is not frozen or
passed through ``torch.jit.optimize_for_inference``: PyTorch documents that the latter bakes in
machine-specific kernels and that serialising its result is not supported, so
:func:`calcinet.inference.load_model` applies it at load time instead.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

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


@contextmanager
def temporary_path(folder: Path, suffix: str) -> Iterator[Path]:
    """A fresh file name in ``folder`` (same file system, so ``os.replace`` is atomic); removed
    on exit unless it was moved away."""
    handle, name = tempfile.mkstemp(prefix=".calcinet-export-", suffix=suffix, dir=folder)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)  # mkstemp makes it private; a model file is meant to be shared
    path = Path(name)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def save_torchscript(module: torch.jit.ScriptModule, path: Path, metadata: dict | None) -> None:
    """Write ``module`` with ``metadata.json`` as an extra file to ``path``."""
    extra = {METADATA_FILE: dumps(metadata)} if metadata is not None else {}
    with quiet_torchscript():
        torch.jit.save(module, str(path), _extra_files=extra)


def save_torchscript_atomic(module: torch.jit.ScriptModule, path: Path, metadata: dict) -> None:
    """Write to a temporary file beside ``path``, then rename: ``path`` is never half-written."""
    with temporary_path(path.parent, path.suffix or ".ts") as temporary:
        save_torchscript(module, temporary, metadata)
        os.replace(temporary, path)
