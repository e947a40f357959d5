"""Build the ``metadata.json`` that travels inside every exported model.

Like a MONAI bundle's metadata, it says everything a consumer needs to feed the model and read its
output (input layout, orientation, spacing, window, thresholds) and where the model came from
(network, training run, config hash, data fingerprint, validation metrics, parity check).
The consumer side, :mod:`calcinet.inference.metadata`, reads the same document.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import torch

from calcinet import __version__
from calcinet.export.card import card_facts, read_evaluation
from calcinet.export.checkpoint import CheckpointInfo, plain
from calcinet.files import file_sha256
from calcinet.imaging import pad_value_hu
from calcinet.inference.metadata import FORMAT, FORMAT_VERSION, INPUT_LAYOUT, ORIENTATION


def build_metadata(
    info: CheckpointInfo,
    thresholds: tuple[float, float],
    torchscript_method: str,
    temperature: float = 1.0,
) -> dict[str, Any]:
    """The metadata of a model exported from ``info``; ``export.parity`` is filled in later.

    ``card`` holds the model card's facts (training data, intended use, licence, the last
    held-out evaluation of this very checkpoint when one is recorded beside it)."""
    x, y, z = info.patch_size
    sha256 = file_sha256(info.path)
    low, high = info.hu_window
    run = info.run
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "task": "probability that the calcification pattern in a CT patch is malignant",
        "class_names": list(info.class_names),
        "input": {
            "dtype": "float32",
            "shape": ["N", 1, x, y, z],
            "layout": INPUT_LAYOUT,
            "orientation": ORIENTATION,
            "axis_order": "x,y,z",
            "patch_size": [x, y, z],
            "spacing_mm": list(info.spacing),
            "units": "HU",
            "pad_value_hu": pad_value_hu((low, high)),
            "intensity_profile": plain(run.get("input_profile") or {}),
            "description": (
                f"Raw Hounsfield units, not windowed: N patches of 1 channel, {x}x{y}x{z} voxels "
                f"along (x, y, z) at {info.spacing} mm, voxel axes in RAS orientation (first axis "
                "towards the patient's Right, second Anterior, third Superior; nibabel/MONAI "
                "convention). Voxels outside the scan hold pad_value_hu."
            ),
        },
        "preprocessing": {
            "hu_window": [low, high],
            "inside_model": True,
            "description": (
                f"Inside the model: clip to [{low:g}, {high:g}] HU and scale to [0, 1] (MONAI "
                "ScaleIntensityRange with clip=True), then the network, then the logit divided "
                f"by the temperature {temperature:.4g}, then a sigmoid."
            ),
        },
        "output": {
            "dtype": "float32",
            "shape": ["N"],
            "meaning": f"probability of class {info.class_names[1]!r} (sigmoid of the logit "
            "divided by the calibration temperature)",
        },
        "decision": {
            "rule": f"{info.class_names[1]} when probability >= threshold",
            "threshold": float(thresholds[0]),
            "operating_point": info.operating_point,
            "threshold_at_sensitivity": float(thresholds[1]),
            "target_sensitivity": info.target_sensitivity,
            "chosen_on": "the validation split of the training run (never on test data), on the "
            "calibrated probability",
        },
        "calibration": {
            "method": "temperature" if temperature != 1.0 else "none",
            "temperature": float(temperature),
            "fitted_on": "the validation split of the training run (binary cross-entropy)",
        },
        "network": {
            "name": info.network["name"],
            "kwargs": {k: plain(v) for k, v in info.network.items() if k != "name"},
        },
        "training": {
            "mlflow_run_id": run.get("mlflow_run_id"),
            "mlflow_tracking_uri": run.get("mlflow_tracking_uri"),
            "mlflow_experiment_id": run.get("mlflow_experiment_id"),
            "config_hash": run.get("config_hash"),
            "data_fingerprint": run.get("data_fingerprint"),
            "calcinet_version": run.get("calcinet_version"),
            "val_metrics": plain(run.get("val_metrics") or {}),
            "checkpoint": str(info.path.resolve()),
            "checkpoint_sha256": sha256,
        },
        "card": card_facts(run, read_evaluation(info.path, sha256)),
        "export": {
            "calcinet_version": __version__,
            "torch_version": str(torch.__version__),
            "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "torchscript_method": torchscript_method,
            "parity": None,
        },
    }
