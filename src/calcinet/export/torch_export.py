"""``torch.export``: the same HU model as an ExportedProgram (``.pt2``), with a dynamic batch.

Not every network can be exported (data-dependent control flow, unsupported operators); then
:func:`export_program` raises :class:`ProgramExportError` with the reason, and the TorchScript
file remains the deliverable.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from calcinet.inference.metadata import METADATA_FILE, dumps

#: Largest batch the program accepts (torch.export needs a bound for the dynamic dimension).
MAX_BATCH = 4096


class ProgramExportError(RuntimeError):
    """``torch.export`` could not capture the model; the message says why."""


def export_program(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``model`` with the batch dimension dynamic.

    ``example`` should have a batch of at least 2: export specialises size-1 dimensions.
    """
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.export(model.eval(), (example,), dynamic_shapes={"hu": {0: batch}})
    except Exception as error:  # export raises many types (UserError, Unsupported, ...)
        lines = [line for line in str(error).strip().splitlines() if line.strip()]
        raise ProgramExportError(f"{type(error).__name__}: {lines[0] if lines else ''}") from None


def save_program(program: torch.export.ExportedProgram, path: Path, metadata: dict | None) -> None:
    """Write the program (``.pt2``) with ``metadata.json`` as an extra file."""
    extra = {METADATA_FILE: dumps(metadata)} if metadata is not None else None
    with warnings.catch_warnings():
        # torch's weight serialiser warns for weights that might not be on the CPU; these are.
        warnings.filterwarnings("ignore", message="No complete tensor found in the group")
        torch.export.save(program, path, extra_files=extra)
