"""Read a ``calcinet-train`` checkpoint and check that it has what an export needs.

Only torch is imported at module level, so that a wrong path or a foreign file is reported
before Lightning and MONAI are loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


class ExportError(ValueError):
    """A checkpoint, output path or result that does not work; the message names it."""


@dataclass
class CheckpointInfo:
    """The facts of a checkpoint an export writes into the model's metadata."""

    path: Path
    network: dict[str, Any]
    patch_size: list[int]
    spacing: list[float]
    hu_window: list[float]
    class_names: list[str]
    operating_point: str
    target_sensitivity: float
    run: dict[str, Any]  # checkpoint["calcinet"]: run id, tracking URI, config hash, val metrics


def plain(value: Any) -> Any:
    """OmegaConf containers, tuples and tensors -> JSON-friendly Python values (NaN -> None)."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf ships with calcinet
        pass
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _expect(ok: bool, path: Path, field: str, value: Any, expected: str) -> None:
    if not ok:
        raise ExportError(
            f"{path}: not a usable calcinet checkpoint: {field}={value!r}; expected {expected}"
        )


def _numbers(value: Any, count: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == count
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )


def read_checkpoint(path: str | Path) -> CheckpointInfo:
    """Load ``path`` on the CPU and check its hyper-parameters; ExportError names what is wrong.

    The file is unpickled (Lightning checkpoints hold more than tensors): give only checkpoints
    you trust, as with any ``.ckpt``.
    """
    path = Path(path)
    if not path.exists():
        raise ExportError(
            f"ckpt_path={path}: no such file; expected a .ckpt written by calcinet-train"
        )
    if not path.is_file():
        raise ExportError(
            f"ckpt_path={path}: is a folder; expected a .ckpt file written by "
            "calcinet-train (e.g. <run>/checkpoints/best.ckpt)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # pickle, zip and torch errors alike
        raise ExportError(
            f"ckpt_path={path}: cannot be read as a PyTorch checkpoint "
            f"({type(error).__name__}); expected a .ckpt written by calcinet-train"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ExportError(
            f"ckpt_path={path}: not a Lightning checkpoint (no 'state_dict'); "
            "expected a .ckpt written by calcinet-train"
        )
    hparams = plain(checkpoint.get("hyper_parameters") or {})
    network = hparams.get("network")
    _expect(
        isinstance(network, dict) and isinstance(network.get("name"), str),
        path,
        "hyper_parameters.network",
        network,
        "{'name': <network>, ...} (a calcinet-train checkpoint)",
    )
    pre = hparams.get("preprocessing") or {}
    _expect(
        _numbers(pre.get("patch_size"), 3) and all(int(s) > 0 for s in pre["patch_size"]),
        path,
        "hyper_parameters.preprocessing.patch_size",
        pre.get("patch_size"),
        "three positive integers (x, y, z)",
    )
    _expect(
        _numbers(pre.get("spacing"), 3) and all(s > 0 for s in pre["spacing"]),
        path,
        "hyper_parameters.preprocessing.spacing",
        pre.get("spacing"),
        "three positive numbers in mm (x, y, z)",
    )
    window = pre.get("hu_window")
    _expect(
        _numbers(window, 2) and window[0] < window[1],
        path,
        "hyper_parameters.preprocessing.hu_window",
        window,
        "[low, high] HU with low < high",
    )
    names = hparams.get("class_names", ["benign", "malignant"])
    _expect(
        isinstance(names, list) and len(names) == 2,
        path,
        "hyper_parameters.class_names",
        names,
        "two class names",
    )
    return CheckpointInfo(
        path=path,
        network=network,
        patch_size=[int(s) for s in pre["patch_size"]],
        spacing=[float(s) for s in pre["spacing"]],
        hu_window=[float(v) for v in window],
        class_names=[str(n) for n in names],
        operating_point=str(hparams.get("operating_point", "youden")),
        target_sensitivity=float(hparams.get("target_sensitivity", 0.95)),
        run=plain(checkpoint.get("calcinet") or {}),
    )


def load_module(info: CheckpointInfo) -> Any:
    """The checkpoint's ``CalciModule`` in eval mode on the CPU (imports Lightning)."""
    from calcinet.training.module import CalciModule

    try:
        module = CalciModule.load_from_checkpoint(info.path, map_location="cpu")
    except Exception as error:
        raise ExportError(
            f"ckpt_path={info.path}: cannot rebuild the model ({type(error).__name__}: {error})"
        ) from None
    return module.eval()
