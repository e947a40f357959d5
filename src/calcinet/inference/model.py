"""Load an exported model (TorchScript ``.ts`` or ``torch.export`` ``.pt2``) with its metadata.

Both formats take float32 ``[N, 1, X, Y, Z]`` raw HU (RAS, the model's spacing) and return ``[N]``
malignancy probabilities; the HU window and the sigmoid are inside the model.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from calcinet.inference.metadata import METADATA_FILE, MetadataError, ModelInfo, parse_metadata


class ModelLoadError(ValueError):
    """The model file is missing, unreadable, or not a calcinet export; the message names it."""


@dataclass
class ExportedModel:
    """A loaded model and its metadata; call it on HU patches ``[N, 1, X, Y, Z]``."""

    path: Path
    info: ModelInfo
    module: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device
    optimized: bool = False

    @torch.inference_mode()
    def __call__(self, hu: torch.Tensor) -> torch.Tensor:
        """Malignancy probabilities ``[N]`` (CPU) of float32 HU patches ``[N, 1, X, Y, Z]``."""
        return self.module(hu.to(self.device, torch.float32)).float().cpu()


@contextmanager
def quiet_torchscript() -> Iterator[None]:
    """Silence TorchScript's deprecation notices (calcinet ships TorchScript on purpose)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.*")
        warnings.filterwarnings("ignore", message=".*TorchScript.*")
        yield


def _optimize(module: torch.jit.ScriptModule, path: Path) -> tuple[torch.jit.ScriptModule, bool]:
    """Freeze + CPU-specific passes at load time (not serialisable, hence not done at export)."""
    try:
        with quiet_torchscript():
            return torch.jit.optimize_for_inference(module.eval()), True
    except Exception as error:  # an optimisation pass may refuse a graph; run it unoptimised
        warnings.warn(
            f"{path}: torch.jit.optimize_for_inference failed ({error}); running the "
            "model as saved",
            RuntimeWarning,
            stacklevel=3,
        )
        return module, False


def load_model(
    path: str | Path, device: str | torch.device = "cpu", optimize: bool = True
) -> ExportedModel:
    """Load ``path`` (``.pt2`` by suffix, else TorchScript) and parse its ``metadata.json``.

    ``optimize`` runs ``torch.jit.optimize_for_inference`` on a TorchScript model on the CPU,
    which folds batch norm into convolutions and picks CPU kernels for this machine.

    Raises:
        ModelLoadError: a ``device`` other than the CPU or a CUDA GPU this machine has; ``path``
            missing, a folder, a training checkpoint, not a model torch can load, or without
            calcinet's metadata.
    """
    path = Path(path)
    given = device
    try:
        device = torch.device(device)
    except RuntimeError:  # torch's message lists its twenty device types
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ModelLoadError(f"--device {given}: expected cpu, auto, cuda or cuda:N")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        # Else torch fails inside the model file ("Attempting to deserialize object on a CUDA
        # device"), which reads as a damaged model.
        raise ModelLoadError(
            f"--device {device}: torch sees {torch.cuda.device_count()} CUDA GPU(s) on this "
            "machine; expected cpu, auto, or cuda:N with N below that count"
        )
    if path.is_dir():
        raise ModelLoadError(
            f"--model-path {path}: is a folder; expected the .ts or .pt2 file calcinet-export "
            "wrote (calcinet-export ckpt_path=<run folder> writes one from a training run)"
        )
    if not path.is_file():
        raise ModelLoadError(
            f"--model-path {path}: no such file; expected a .ts or .pt2 file written by "
            "calcinet-export"
        )
    if path.suffix == ".ckpt":
        raise ModelLoadError(
            f"--model-path {path}: a training checkpoint; predict runs the exported model: "
            f"calcinet-export ckpt_path={path} writes it, then give its .ts file"
        )
    extra = {METADATA_FILE: ""}
    try:
        with quiet_torchscript():
            if path.suffix == ".pt2":
                program = torch.export.load(path, extra_files=extra)
                module = program.module().to(device)
            else:
                module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as error:  # torch raises RuntimeError, ValueError, zipfile errors ...
        raise ModelLoadError(
            f"--model-path {path}: cannot be loaded as a "
            f"{'torch.export program' if path.suffix == '.pt2' else 'TorchScript model'}"
            f" ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        ) from None
    try:
        info = parse_metadata(extra[METADATA_FILE], str(path))
    except MetadataError as error:
        raise ModelLoadError(str(error)) from None
    optimized = False
    if optimize and device.type == "cpu" and isinstance(module, torch.jit.ScriptModule):
        module, optimized = _optimize(module, path)
    return ExportedModel(path, info, module, device, optimized)
