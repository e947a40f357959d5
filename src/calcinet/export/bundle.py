"""A MONAI bundle of an exported model: ``configs/``, ``models/model.ts``, ``docs/README.md``.

The layout and the ``metadata.json`` keys follow MONAI's bundle specification (the keys of
``monai.bundle.utils.DEFAULT_METADATA``, the required ones of MONAI's metadata schema, with
``network_data_format`` describing the input in HU, RAS, the model's spacing and patch size, and
the output probability). ``configs/inference.json`` runs with MONAI's own tools on NIfTI (or any
file ``LoadImage`` reads)::

    python -m monai.bundle run --config_file <dir>/configs/inference.json \\
        --meta_file <dir>/configs/metadata.json --bundle_root <dir> --input_path scan.nii.gz

It loads the file, puts the channel first, orients it to RAS, resamples it to the model's spacing
(``Spacingd``), crops or pads the middle of the volume to the patch size with air (as calcinet
does when no centre is given), runs the TorchScript model (HU window and sigmoid inside) and
writes ``<output_dir>/predictions.csv`` (``filename,probability``; MONAI's ``CSVSaver``). It
needs no ignite: the run is a list of expressions. MONAI resamples with its own interpolation,
so for scans not already at the model's spacing its probabilities differ slightly from
``calcinet-predict``'s (same crop, same model).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from calcinet.export.card import render

SCHEMA_URL = (
    "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/"
    "meta_schema_20220324.json"
)


def bundle_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``configs/metadata.json`` of the bundle, from the exported model's ``metadata.json``."""
    import monai
    import nibabel
    import numpy
    import torch

    card = metadata.get("card") or {}
    inp, decision = metadata["input"], metadata["decision"]
    version = metadata["export"]["calcinet_version"]
    authors = ", ".join(card.get("authors") or ["unknown"])
    checkpoint = (metadata.get("training") or {}).get("checkpoint_sha256") or ""
    return {
        "schema": SCHEMA_URL,
        "version": version,
        "changelog": {
            version: f"exported by calcinet {version} on {metadata['export']['created_utc']} "
            f"from checkpoint sha256 {checkpoint[:16]}"
        },
        "monai_version": monai.__version__,
        "pytorch_version": str(torch.__version__).split("+")[0],
        "numpy_version": numpy.__version__,
        "required_packages_version": {"nibabel": nibabel.__version__},
        "optional_packages_version": {},
        "name": f"calcinet {metadata['network']['name']} calcification malignancy classifier",
        "task": metadata["task"],
        "description": (
            f"{card.get('intended_use', '')} Input: {inp['description']} Output: "
            f"{metadata['output']['meaning']}; {decision['rule']} "
            f"(threshold {decision['threshold']:.4f})."
        ),
        "intended_use": card.get("intended_use"),
        "authors": authors,
        "copyright": f"Copyright (c) {authors}",
        "license": card.get("license"),
        "data_source": (card.get("training_data") or {}).get("description"),
        "data_type": "nibabel",
        "image_classes": "1 channel, CT in Hounsfield units (not windowed)",
        "label_classes": f"probability of {metadata['class_names'][1]!r} (0-1)",
        "pred_classes": list(metadata["class_names"]),
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "hounsfield",
                    "modality": "CT",
                    "num_channels": 1,
                    "spatial_shape": list(inp["patch_size"]),
                    "dtype": "float32",
                    "value_range": [inp["pad_value_hu"], 3071],
                    "is_patch_data": True,
                    "channel_def": {"0": "CT, Hounsfield units"},
                    "orientation": inp["orientation"],
                    "spacing_mm": list(inp["spacing_mm"]),
                    "pad_value_hu": inp["pad_value_hu"],
                }
            },
            "outputs": {
                "pred": {
                    "type": "probabilities",
                    "format": "classes",
                    "num_channels": 1,
                    "spatial_shape": [1],
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_onehot": False,
                    "channel_def": {"0": f"probability of {metadata['class_names'][1]}"},
                }
            },
        },
    }


def inference_config(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``configs/inference.json``: MONAI transforms around the TorchScript model."""
    inp = metadata["input"]
    return {
        "imports": ["$import torch", "$import monai"],
        "bundle_root": ".",
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "input_path": [],
        "output_dir": "$@bundle_root + '/eval'",
        "network_def": "$torch.jit.load(@bundle_root + '/models/model.ts', map_location=@device)",
        "network": "$@network_def.eval()",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image", "image_only": True},
                {"_target_": "EnsureChannelFirstd", "keys": "image"},
                {"_target_": "Orientationd", "keys": "image", "axcodes": inp["orientation"]},
                {"_target_": "Spacingd", "keys": "image", "pixdim": list(inp["spacing_mm"]),
                 "mode": "bilinear", "padding_mode": "border"},
                {"_target_": "ResizeWithPadOrCropd", "keys": "image",
                 "spatial_size": list(inp["patch_size"]), "mode": "constant",
                 "value": inp["pad_value_hu"]},
                {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"},
            ],
        },
        "dataset": {
            "_target_": "Dataset",
            "data": "$[{'image': path} for path in ([@input_path] if isinstance(@input_path, str) "
            "else @input_path)]",
            "transform": "@preprocessing",
        },
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 8,
                       "shuffle": False, "num_workers": 0},
        "saver": {"_target_": "CSVSaver", "output_dir": "@output_dir",
                  "filename": "predictions.csv"},
        "run": [
            "$torch.set_grad_enabled(False)",
            "$[@saver.save_batch(@network(batch['image'].to(@device)).cpu(), "
            "{'filename_or_obj': batch['image'].meta['filename_or_obj']}) "
            "for batch in @dataloader]",
            "$@saver.finalize()",
        ],
    }


def write_bundle(folder: Path, torchscript: Path, metadata: Mapping[str, Any]) -> Path:
    """Write the bundle of ``torchscript`` into ``folder`` (created; its bundle files are
    replaced); returns ``folder``."""
    folder = Path(folder)
    for sub in ("configs", "models", "docs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "configs" / "metadata.json").write_text(
        json.dumps(bundle_metadata(metadata), indent=2) + "\n")
    (folder / "configs" / "inference.json").write_text(
        json.dumps(inference_config(metadata), indent=2) + "\n")
    shutil.copyfile(torchscript, folder / "models" / "model.ts")
    (folder / "docs" / "README.md").write_text(render(metadata))
    return folder
