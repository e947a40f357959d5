"""Run a model over an evaluation set: a Lightning checkpoint or an exported TorchScript model.

Both kinds are wrapped in :class:`LoadedModel`, which takes the DataModule's patches
(``[N, 1, X, Y, Z]``: windowed to [0, 1] for a checkpoint, in HU for an exported model, which
windows inside, exactly as ``calcinet-predict`` feeds it) and returns malignancy probabilities,
and which carries what the model was trained with (patch size, spacing, HU window) and the
thresholds stored with it.

This is the one module of :mod:`calcinet.evaluation` that needs Lightning (to rebuild a
checkpoint); it is imported only when a checkpoint is loaded.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from calcinet import CLASS_NAMES
from calcinet.evaluation import EvaluationError
from calcinet.files import file_sha256
from calcinet.training.checkpoints import find_checkpoint as find_run_checkpoint

#: Every combination of flips along the three spatial axes of ``[N, 1, X, Y, Z]`` (8 views,
#: the identity first): the test-time augmentation.
TTA_FLIPS: tuple[tuple[int, ...], ...] = tuple(
    dims for r in range(4) for dims in itertools.combinations((2, 3, 4), r)
)


@dataclass
class LoadedModel:
    """A model ready to evaluate.

    ``predict`` maps patches to (calibrated) probabilities: windowed ones, or HU ones when
    ``takes_hu`` (an exported model, which windows inside, gets what ``calcinet-predict`` gives
    it); ``temperature`` is the calibration inside them (1.0: none); ``network`` is the eager
    network (windowed patch -> ``[N, 1]`` logit) when there is one (checkpoints), for Grad-CAM.
    """

    kind: str
    path: Path
    predict: Callable[[torch.Tensor], torch.Tensor]
    preprocessing: dict[str, list[float] | None]
    threshold: float
    threshold_at_sensitivity: float | None
    target_sensitivity: float | None
    operating_point: str | None
    class_names: tuple[str, str] = CLASS_NAMES
    network: nn.Module | None = None
    identity: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0
    takes_hu: bool = False

    @property
    def training_run_id(self) -> str | None:
        return self.identity.get("mlflow_run_id")


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> the GPU when there is one, else the CPU; anything else as torch reads it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise EvaluationError(f"device={device!r}: {error}") from None


def find_checkpoint(path: Path) -> Path:
    """The checkpoint ``path`` names (a file, or the best one of a training run folder)."""
    try:
        return find_run_checkpoint(path)
    except FileNotFoundError as error:
        raise EvaluationError(str(error)) from None


def load_checkpoint(path: Path, device: torch.device) -> LoadedModel:
    """A ``calcinet-train`` checkpoint: rebuild the :class:`CalciModule` and read its facts."""
    from calcinet.training.module import CalciModule  # Lightning: only for checkpoints

    path = find_checkpoint(Path(path))
    try:
        raw = torch.load(path, map_location="cpu", weights_only=False)
        module = CalciModule.load_from_checkpoint(path, map_location="cpu")
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same message
        raise EvaluationError(
            f"ckpt_path={str(path)!r}: not a calcinet checkpoint ({type(error).__name__}: {error})"
        ) from None
    module.eval().to(device)
    hparams = module.hparams
    prep = dict(hparams.get("preprocessing") or {})
    identity = {key: value for key, value in dict(raw.get("calcinet") or {}).items()}
    identity.update(
        sha256=file_sha256(path),
        network=dict(hparams.get("network") or {}),
        epoch=raw.get("epoch"),
        global_step=raw.get("global_step"),
    )

    @torch.no_grad()
    def predict(image: torch.Tensor) -> torch.Tensor:
        return module.probability(image.to(device))

    return LoadedModel(
        kind="checkpoint",
        path=path,
        predict=predict,
        preprocessing={
            key: _as_list(prep.get(key)) for key in ("patch_size", "spacing", "hu_window")
        },
        threshold=float(module.threshold),
        threshold_at_sensitivity=float(module.threshold_at_sensitivity),
        target_sensitivity=float(hparams.get("target_sensitivity", 0.95)),
        operating_point=str(hparams.get("operating_point", "youden")),
        class_names=tuple(hparams.get("class_names") or CLASS_NAMES),
        network=module.network,
        identity=identity,
        temperature=float(module.temperature),
    )


def load_exported(path: Path, device: torch.device) -> LoadedModel:
    """An exported model (``.ts`` or ``.pt2``), loaded and checked by the loader
    ``calcinet-predict`` uses (:func:`calcinet.inference.load_model`): raw HU
    ``[N, 1, X, Y, Z]`` in, calibrated probabilities ``[N]`` out, facts in its metadata."""
    from calcinet.inference.model import ModelLoadError
    from calcinet.inference.model import load_model as load_inference_model

    try:
        exported = load_inference_model(path, device)
    except ModelLoadError as error:
        raise EvaluationError(str(error).replace("--model-path ", "model_path=", 1)) from None
    info, doc = exported.info, exported.info.raw

    def predict(image: torch.Tensor) -> torch.Tensor:  # HU patches, as predict feeds them
        return exported(image).reshape(-1)

    training = doc.get("training") or {}
    identity = {
        "mlflow_run_id": training.get("mlflow_run_id"),
        "mlflow_tracking_uri": training.get("mlflow_tracking_uri"),
        "data_fingerprint": training.get("data_fingerprint"),
        "sha256": file_sha256(Path(path)),
        "metadata": doc,
    }
    decision = doc.get("decision") or {}
    return LoadedModel(
        kind="torch.export" if Path(path).suffix == ".pt2" else "torchscript",
        path=Path(path),
        predict=predict,
        preprocessing={"patch_size": list(info.patch_size), "spacing": list(info.spacing),
                       "hu_window": list(info.hu_window)},
        threshold=info.threshold,
        threshold_at_sensitivity=info.threshold_at_sensitivity,
        target_sensitivity=info.target_sensitivity,
        operating_point=decision.get("operating_point"),
        class_names=info.class_names,
        identity=identity,
        temperature=float((doc.get("calibration") or {}).get("temperature", 1.0)),
        takes_hu=True,
    )


def _as_list(value: Any) -> list[float] | None:
    return None if value is None else [v for v in value]


def predict_tta(model: LoadedModel, image: torch.Tensor) -> torch.Tensor:
    """Mean probability over the eight flipped views of each patch (identity included)."""
    views = [model.predict(torch.flip(image, dims) if dims else image) for dims in TTA_FLIPS]
    return torch.stack(views).mean(dim=0)


def _metadata(batch: Mapping[str, Any], size: int) -> dict[str, list[Any]]:
    """The per-sample string/number fields of a collated batch (nested or array fields skipped)."""
    columns: dict[str, list[Any]] = {}
    for key, value in batch.items():
        if key in ("image", "label"):
            continue
        if isinstance(value, torch.Tensor | np.ndarray):
            if value.ndim == 1 and len(value) == size:
                columns[str(key)] = value.tolist()
        elif (
            isinstance(value, list | tuple)
            and len(value) == size
            and all(isinstance(v, str | int | float | bool) or v is None for v in value)
        ):
            columns[str(key)] = list(value)
    return columns


def _record_path(record: Mapping[str, Any]) -> str:
    for key in ("path", "image"):
        if isinstance(record.get(key), str | Path):
            return str(record[key])
    return ""


def predict_loader(
    model: LoadedModel,
    loader: Iterable[Mapping[str, Any]],
    records: Sequence[Mapping[str, Any]] | None = None,
    tta: bool = False,
) -> pd.DataFrame:
    """One row per sample: ``id, path, label, probability`` (+ ``probability_tta``) and the
    metadata fields of the batches, in loader order. The batches' images are what ``model``
    takes (windowed patches, or HU patches when ``model.takes_hu``).

    ``records`` (the source's records of the split, in the same order) supply the file path of
    samples read from disk when the batches no longer carry it.
    """
    rows: dict[str, list[Any]] = {"id": [], "path": [], "label": [], "probability": []}
    if tta:
        rows["probability_tta"] = []
    metadata: dict[str, list[Any]] = {}
    seen = 0
    from calcinet.progress import bar

    for batch in bar(loader, desc="score", unit="batch",
                     total=len(loader) if hasattr(loader, "__len__") else None):
        image, label = batch["image"], batch["label"]
        size = int(image.shape[0])
        rows["label"] += torch.as_tensor(label).reshape(-1).long().tolist()
        rows["probability"] += model.predict(image).cpu().double().tolist()
        if tta:
            rows["probability_tta"] += predict_tta(model, image).cpu().double().tolist()
        fields = _metadata(batch, size)
        ids = fields.pop("id", None) or [str(seen + i) for i in range(size)]
        paths = fields.pop("path", None) or [
            _record_path(records[seen + i])
            if records is not None and seen + i < len(records)
            else ""
            for i in range(size)
        ]
        rows["id"] += [str(i) for i in ids]
        rows["path"] += ["" if p is None else str(p) for p in paths]
        # Columns keep the order in which they first appear (the source's own order).
        for key in [*metadata, *(k for k in fields if k not in metadata)]:
            metadata.setdefault(key, [None] * seen)
            metadata[key] += fields.get(key, [None] * size)
        seen += size
    return pd.DataFrame({**rows, **{k: v for k, v in metadata.items() if k not in rows}})
