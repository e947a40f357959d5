"""Run an exported model on CT volumes, with nothing but torch and an image reader.

``load_model`` reads a ``.ts`` / ``.pt2`` file and its ``metadata.json``; ``expand_inputs`` turns
files, folders, DICOM series and manifests into patch requests; ``predict`` cuts each patch (RAS,
the model's spacing, HU) and batches it through the model. Nothing here imports Lightning, Hydra,
MLflow, MONAI or the training code, so a consumer installs only what inference needs.
"""

from calcinet.inference.inputs import Failure, PatchRequest, expand_inputs
from calcinet.inference.metadata import METADATA_FILE, ModelInfo, parse_metadata
from calcinet.inference.model import ExportedModel, ModelLoadError, load_model
from calcinet.inference.patches import cut_patch
from calcinet.inference.predict import Prediction, predict
from calcinet.inference.readers import Volume, read_volume

__all__ = [
    "METADATA_FILE",
    "ExportedModel",
    "Failure",
    "ModelInfo",
    "ModelLoadError",
    "PatchRequest",
    "Prediction",
    "Volume",
    "cut_patch",
    "expand_inputs",
    "load_model",
    "parse_metadata",
    "predict",
    "read_volume",
]
