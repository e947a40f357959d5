"""``export_checkpoint``: checkpoint -> TorchScript (+ torch.export) with metadata, checked.

Steps: read and check the checkpoint; wrap its network with the HU window and the sigmoid;
script it (and export a program); write both to temporary files beside the outputs; reload them
in a fresh process and compare with the checkpoint; write the final files, whose metadata records
that comparison, by atomic rename; write the model card beside them
(``<stem>.MODEL_CARD.md``) and, when asked, a MONAI bundle; log them to MLflow.
"""

from __future__ import annotations

import importlib
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calcinet.evaluation.calibration import bound_note
from calcinet.export.card import card_path, render
from calcinet.export.checkpoint import ExportError, load_module, read_checkpoint
from calcinet.export.metadata import build_metadata
from calcinet.export.mlflow_model import MlflowOptions, MlflowOutcome, log_export
from calcinet.export.parity import FreshProcess, ParityResult, check_batch, check_parity
from calcinet.export.torch_export import ProgramExportError, export_program, save_program
from calcinet.export.torchscript import save_torchscript, to_torchscript
from calcinet.export.wrapper import HUClassifier
from calcinet.files import atomic_replace, atomic_write, temporary_beside
from calcinet.training.checkpoints import find_checkpoint


@dataclass
class ExportResult:
    """Where the files went and what the checks said."""

    torchscript: Path
    program: Path | None
    parity: ParityResult
    metadata: dict
    mlflow: MlflowOutcome
    card: Path | None = None
    bundle: Path | None = None
    notes: list[str] = field(default_factory=list)
    #: Wall seconds of each step (load, TorchScript, torch.export, parity, files, MLflow).
    seconds: dict[str, float] = field(default_factory=dict)


@contextmanager
def _timed(seconds: dict[str, float], step: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[step] = seconds.get(step, 0.0) + time.perf_counter() - start


def default_output(ckpt_path: Path) -> Path:
    """``<checkpoint folder>/<checkpoint stem>.ts``."""
    return ckpt_path.with_suffix(".ts")


def check_output(output: Path, ckpt_path: Path) -> None:
    """Refuse to overwrite the checkpoint or a folder; fail early when nothing can be written."""
    for path in (output, output.with_suffix(".pt2")):
        if path.exists() and ckpt_path.exists() and path.resolve() == ckpt_path.resolve():
            raise ExportError(
                f"output_path={output}: would overwrite the checkpoint {ckpt_path}; "
                "choose another file name (e.g. model.ts)"
            )
    if output.is_dir():
        raise ExportError(
            f"output_path={output}: is a folder; expected a file name such as {output / 'model.ts'}"
        )
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with temporary_beside(output, ".probe"):
            pass
    except OSError as error:
        raise ExportError(
            f"output_path={output}: folder {output.parent} is not writable "
            f"({error.strerror or error}); expected a writable location"
        ) from None


def export_checkpoint(
    ckpt_path: str | Path,
    output_path: str | Path | None = None,
    torch_export: bool = True,
    parity_patches: int = 4,
    tolerance: float = 1e-5,
    seed: int = 0,
    mlflow: MlflowOptions | None = None,
    bundle_dir: str | Path | None = None,
) -> ExportResult:
    """Export ``ckpt_path`` (a checkpoint, or a training run folder: its best checkpoint);
    returns an :class:`ExportResult` or raises :class:`ExportError`.

    Beside the TorchScript file: ``<stem>.MODEL_CARD.md`` (also inside it as ``model_card.md``).
    ``bundle_dir``: also write a MONAI bundle there (:mod:`calcinet.export.bundle`)."""
    ckpt_path = Path(ckpt_path)
    if ckpt_path.is_dir():
        try:
            ckpt_path = find_checkpoint(ckpt_path)
        except FileNotFoundError as error:
            raise ExportError(f"{error}; expected a .ckpt file or a calcinet-train run folder"
                              ) from None
    output = Path(output_path) if output_path else default_output(ckpt_path)
    if output.suffix == ".pt2":
        raise ExportError(
            f"output_path={output}: the .pt2 program is written beside the "
            "TorchScript file; give the TorchScript name (e.g. model.ts)"
        )
    check_output(output, ckpt_path)
    info = read_checkpoint(ckpt_path)
    # The parity process starts now: its torch import overlaps with loading, scripting and
    # torch.export here.
    with FreshProcess(programs=torch_export) as fresh:
        return _export(info, output, torch_export, parity_patches, tolerance, seed, mlflow,
                       bundle_dir, fresh)


def _export(
    info: Any,
    output: Path,
    torch_export: bool,
    parity_patches: int,
    tolerance: float,
    seed: int,
    mlflow: MlflowOptions | None,
    bundle_dir: str | Path | None,
    fresh: FreshProcess,
) -> ExportResult:
    seconds: dict[str, float] = {}
    with _timed(seconds, "load"):
        module = load_module(info)
    temperature = float(module.temperature)
    model = HUClassifier(module.network, info.hu_window, info.patch_size, temperature).eval()
    batch = check_batch(info.patch_size, max(2, parity_patches), seed)
    with _timed(seconds, "TorchScript"):
        scripted, method = to_torchscript(model, batch)
    notes = [note for note in [bound_note(temperature)] if note]
    if method != "script":
        notes.append(f"TorchScript by {method}")
    program = None
    if torch_export:
        try:
            with _timed(seconds, "torch.export"):
                program = export_program(model, batch)
        except ProgramExportError as error:
            notes.append(
                f"no .pt2: torch.export does not support network {info.network['name']!r} ({error})"
            )
    thresholds = (float(module.threshold), float(module.threshold_at_sensitivity))
    metadata = build_metadata(info, thresholds, method, temperature)
    program_path = output.with_suffix(".pt2") if program is not None else None

    with (
        temporary_beside(output, ".ts") as ts_tmp,
        temporary_beside(output.with_suffix(".pt2"), ".pt2") as pt2_tmp,
    ):
        save_torchscript(scripted, ts_tmp, metadata)
        if program is not None:
            save_program(program, pt2_tmp, metadata)
        try:
            if mlflow is not None and mlflow.enabled:
                # MLflow's import (seconds) runs while the parity process works.
                threading.Thread(target=importlib.import_module, args=("mlflow",),
                                 daemon=True).start()
            with _timed(seconds, "parity"):
                parity = check_parity(
                    module,
                    info.hu_window,
                    ts_tmp,
                    pt2_tmp if program is not None else None,
                    batch,
                    tolerance,
                    fresh,
                )
        except RuntimeError as error:
            raise ExportError(f"output_path={output}: parity check failed: {error}") from None
        if not parity.torchscript_ok:
            raise ExportError(
                f"output_path={output}: parity check failed: the TorchScript model reloaded in a "
                "fresh process differs from the checkpoint by "
                f"{parity.torchscript_max_abs_diff:.3g} (max absolute difference of "
                f"probabilities on {parity.num_patches} patches; "
                f"tolerance {tolerance:g}); nothing was written"
            )
        if program is not None and not parity.torch_export_ok:
            notes.append(
                f"no .pt2: the torch.export program differs from the checkpoint by "
                f"{parity.torch_export_max_abs_diff:.3g} (> {tolerance:g})"
            )
            program = program_path = None
        metadata["export"]["parity"] = parity.as_metadata()
        if program_path is not None:
            metadata["export"]["torch_export"] = {"file": program_path.name}
        else:
            reason = next((n for n in notes if n.startswith("no .pt2")), "torch_export=false")
            metadata["export"]["torch_export"] = {"file": None, "reason": reason}
            if output.with_suffix(".pt2").exists():
                notes.append(
                    f"{output.with_suffix('.pt2')} is left from an earlier export and "
                    "does not match this model"
                )
        # Same model, final metadata: rewrite both, then rename them over the outputs, so a
        # failed write leaves the earlier .ts and .pt2 as they were.
        save_torchscript(scripted, ts_tmp, metadata)
        if program is not None and program_path is not None:
            save_program(program, pt2_tmp, metadata)
        atomic_replace(ts_tmp, output)
        if program is not None and program_path is not None:
            atomic_replace(pt2_tmp, program_path)
    card = write_card(card_path(output), metadata)
    bundle = None
    if bundle_dir is not None:
        from calcinet.export.bundle import write_bundle

        with _timed(seconds, "bundle"):
            bundle = write_bundle(Path(bundle_dir), output, metadata)
    with _timed(seconds, "MLflow"):
        outcome = log_export(output, program_path, metadata,
                             mlflow or MlflowOptions(enabled=False))
    return ExportResult(output, program_path, parity, metadata, outcome, card, bundle, notes,
                        seconds)


def write_card(path: Path, metadata: dict) -> Path:
    """Write the model card of ``metadata`` to ``path`` (atomically); returns ``path``."""
    with atomic_write(path, ".md") as temporary:
        temporary.write_text(render(metadata))
    return path
