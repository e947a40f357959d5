"""One export of the session's tiny checkpoint, shared by the export and inference tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from calcinet.export import ExportResult, export_checkpoint

_DONE: dict[Path, ExportResult] = {}


def export_tiny(checkpoint: Path, factory: pytest.TempPathFactory) -> ExportResult:
    """Export ``checkpoint`` once per session (no MLflow) into a fresh folder."""
    if checkpoint not in _DONE:
        folder = factory.mktemp("tiny_export")
        _DONE[checkpoint] = export_checkpoint(checkpoint, folder / "model.ts")
    return _DONE[checkpoint]
