"""Export a trained checkpoint as a self-contained model: TorchScript (and torch.export).

The exported model takes raw HU patches and returns malignancy probabilities (the HU window and
the sigmoid are inside), carries ``metadata.json`` (input geometry, thresholds, provenance), and
is checked against the checkpoint in a fresh process before it is written. See
:func:`calcinet.export.exporter.export_checkpoint`.
"""

from calcinet.export.checkpoint import ExportError
from calcinet.export.exporter import ExportResult, export_checkpoint
from calcinet.export.mlflow_model import MlflowOptions
from calcinet.export.wrapper import HUClassifier, window_hu

__all__ = [
    "ExportError",
    "ExportResult",
    "HUClassifier",
    "MlflowOptions",
    "export_checkpoint",
    "window_hu",
]
