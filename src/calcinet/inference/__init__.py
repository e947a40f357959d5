"""Run an exported model on CT volumes, with nothing but torch and the image readers.

``load_model`` reads a ``.ts`` / ``.pt2`` file and its ``metadata.json``; ``expand_inputs`` turns
files, folders, DICOM inputs and manifests into findings; ``predict`` cuts each patch with
:mod:`calcinet.imaging` (the code training uses) and batches it through the model. Nothing here
imports Lightning, Hydra, MLflow, MONAI or the training code, so a consumer installs only what
inference needs.
"""

from calcinet.imaging import Volume, cut_patch, read_volume
from calcinet.imaging.rows import Location
from calcinet.inference.inputs import Failure, expand_inputs
from calcinet.inference.metadata import METADATA_FILE, ModelInfo, parse_metadata
from calcinet.inference.model import ExportedModel, ModelLoadError, load_model
from calcinet.inference.predict import Prediction, predict

__all__ = [
    "METADATA_FILE",
    "ExportedModel",
    "Failure",
    "Location",
    "ModelInfo",
    "ModelLoadError",
    "Prediction",
    "Volume",
    "cut_patch",
    "expand_inputs",
    "load_model",
    "parse_metadata",
    "predict",
    "read_volume",
]
