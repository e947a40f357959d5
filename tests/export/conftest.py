"""Fixtures of the export tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from calcinet.export import ExportResult
from tests.export.exports import export_tiny


@pytest.fixture(scope="session")
def tiny_export(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    """The tiny checkpoint exported to ``model.ts`` + ``model.pt2`` (MLflow off)."""
    return export_tiny(tiny_checkpoint, tmp_path_factory)
