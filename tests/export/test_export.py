"""Exporting a checkpoint: files, metadata, parity in a torch-only process, bad inputs."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.transforms import ScaleIntensityRange

from calcinet.export import ExportError, ExportResult, export_checkpoint
from calcinet.inference.metadata import METADATA_FILE, parse_metadata
from calcinet.training.module import CalciModule

# A consumer's process: torch only. argv: model.ts, model.pt2, inputs.pt, outputs.pt.
CONSUMER = r"""
import json, sys
import torch
ts, pt2, inputs, outputs = sys.argv[1:5]
hu = torch.load(inputs, weights_only=True)
extra = {"metadata.json": ""}
with torch.inference_mode():
    result = {"ts": torch.jit.load(ts, _extra_files=extra)(hu),
              "pt2": torch.export.load(pt2).module()(hu)}
torch.save(result, outputs)
print(json.dumps({"calcinet_imported": any(m.split(".")[0] == "calcinet" for m in sys.modules),
                  "metadata": json.loads(extra["metadata.json"])}))
"""


def _checkpoint_probabilities(checkpoint: Path, hu: torch.Tensor) -> torch.Tensor:
    """MONAI's window, the eager network, the stored temperature, a sigmoid."""
    module = CalciModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    low, high = module.hparams.preprocessing["hu_window"]
    temperature = torch.load(checkpoint, weights_only=False)["state_dict"]["temperature"]
    windowed = ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)(hu)
    with torch.no_grad():
        logit = module.network(torch.as_tensor(windowed)).reshape(-1).float()
        return torch.sigmoid(logit / float(temperature))


def test_reloaded_in_a_torch_only_process_matches_the_checkpoint(
    tiny_export: ExportResult, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    torch.manual_seed(1)
    hu = torch.rand(5, 1, 24, 24, 24) * 4000.0 - 1500.0  # inside and outside the window
    torch.save(hu, tmp_path / "inputs.pt")
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            CONSUMER,
            str(tiny_export.torchscript),
            str(tiny_export.program),
            str(tmp_path / "inputs.pt"),
            str(tmp_path / "outputs.pt"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["calcinet_imported"] is False
    outputs = torch.load(tmp_path / "outputs.pt", weights_only=True)
    expected = _checkpoint_probabilities(tiny_checkpoint, hu)
    assert outputs["ts"].shape == (5,)
    assert (outputs["ts"] - expected).abs().max() <= 1e-5
    assert (outputs["pt2"] - expected).abs().max() <= 1e-5
    assert report["metadata"] == tiny_export.metadata


def test_metadata_describes_the_checkpoint(
    tiny_export: ExportResult, tiny_checkpoint: Path
) -> None:
    extra = {METADATA_FILE: ""}
    torch.jit.load(str(tiny_export.torchscript), _extra_files=extra)
    info = parse_metadata(extra[METADATA_FILE], str(tiny_export.torchscript))
    module = CalciModule.load_from_checkpoint(tiny_checkpoint, map_location="cpu")
    raw = torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)["calcinet"]
    assert info.patch_size == (24, 24, 24) and info.spacing == (1.5, 1.5, 1.5)
    assert info.hu_window == (-200.0, 1800.0)
    assert info.threshold == pytest.approx(float(module.threshold))
    assert info.threshold_at_sensitivity == pytest.approx(float(module.threshold_at_sensitivity))
    meta = info.raw
    assert meta["network"]["name"] == "compact"
    assert meta["network"]["kwargs"] == {"channels": [8, 16], "dropout": 0.0}
    assert meta["training"]["config_hash"] == raw["config_hash"]
    assert meta["training"]["data_fingerprint"] == raw["data_fingerprint"]
    assert meta["training"]["mlflow_run_id"] is None  # the tiny checkpoint had no MLflow
    assert set(meta["training"]["val_metrics"]) == set(raw["val_metrics"])
    parity = meta["export"]["parity"]
    assert parity["torchscript_passed"] and parity["torch_export_passed"]
    assert parity["torchscript_max_abs_diff"] <= 1e-5
    assert meta["export"]["torchscript_method"] == "script"
    # The .pt2 carries the same document.
    extra_pt2 = {METADATA_FILE: ""}
    torch.export.load(tiny_export.program, extra_files=extra_pt2)
    assert json.loads(extra_pt2[METADATA_FILE]) == meta
    # No temporary file is left beside the outputs.
    assert sorted(p.name for p in tiny_export.torchscript.parent.iterdir()) == [
        "model.MODEL_CARD.md",
        "model.pt2",
        "model.ts",
    ]


def test_default_output_is_beside_the_checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> None:
    copy = tmp_path / "best.ckpt"
    copy.write_bytes(tiny_checkpoint.read_bytes())
    result = export_checkpoint(copy, torch_export=False)
    assert result.torchscript == tmp_path / "best.ts" and result.program is None
    assert result.metadata["export"]["torch_export"] == {
        "file": None,
        "reason": "torch_export=false",
    }
    assert copy.read_bytes() == tiny_checkpoint.read_bytes()


@pytest.mark.parametrize(("temperature", "noted"), [(1.7, False), (100.0, True), (0.01, True)])
def test_a_temperature_at_a_bound_of_its_fit_is_noted(
    tiny_checkpoint: Path, tmp_path: Path, temperature: float, noted: bool
) -> None:
    checkpoint = torch.load(tiny_checkpoint, weights_only=False)
    checkpoint["state_dict"]["temperature"] = torch.tensor(temperature)
    torch.save(checkpoint, tmp_path / "best.ckpt")
    result = export_checkpoint(tmp_path / "best.ckpt", torch_export=False)
    notes = [n for n in result.notes if n.startswith("calibration temperature")]
    assert notes == ([f"calibration temperature {temperature:.4g} is at a bound of its fit "
                      "[0.01, 100]: the validation scores did not calibrate (a model that "
                      "separates nothing gives about 0.5 everywhere); check the run's val/auroc"]
                     if noted else [])


def test_a_run_folder_exports_its_best_checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("epoch000-val_auroc0.5000.ckpt", "last.ckpt"):
        (run / "checkpoints" / name).write_bytes(tiny_checkpoint.read_bytes())
    result = export_checkpoint(run, torch_export=False)
    assert result.torchscript == run / "checkpoints" / "epoch000-val_auroc0.5000.ts"
    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(ExportError, match=r"no \*.ckpt file in .*; expected a .ckpt file or a"):
        export_checkpoint(empty, torch_export=False)


def test_bad_inputs_name_the_path(tiny_checkpoint: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(ExportError, match=f"ckpt_path={missing}: no such file; expected a .ckpt"):
        export_checkpoint(missing, tmp_path / "m.ts")

    foreign = tmp_path / "weights.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hyper_parameters": {"lr": 1}}, foreign)
    with pytest.raises(
        ExportError,
        match=r"not a usable calcinet checkpoint: "
        r"hyper_parameters.network=None",
    ):
        export_checkpoint(foreign, tmp_path / "m.ts")

    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    with pytest.raises(ExportError, match=f"ckpt_path={text}: cannot be read as a PyTorch "):
        export_checkpoint(text, tmp_path / "m.ts")

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(
        ExportError, match=f"output_path={blocker / 'm.ts'}: folder {blocker} is not writable"
    ):
        export_checkpoint(tiny_checkpoint, blocker / "m.ts")

    with pytest.raises(ExportError, match="would overwrite the checkpoint"):
        export_checkpoint(tiny_checkpoint, tiny_checkpoint)
    assert not list(tmp_path.glob("*.ts"))


@pytest.mark.parametrize("failing", ["save_torchscript", "save_program"])
def test_a_failed_write_keeps_the_earlier_export(
    failing: str,
    tiny_export: ExportResult,
    tiny_checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Writing the final file dies half way: the earlier model.ts and model.pt2 stay as they
    were, and no temporary file is left beside them."""
    import calcinet.export.exporter as exporter

    earlier: dict[str, bytes] = {}
    for source in (tiny_export.torchscript, tiny_export.program):
        earlier[source.name] = source.read_bytes()
        (tmp_path / source.name).write_bytes(earlier[source.name])
    real_save = getattr(exporter, failing)
    calls: list[Path] = []

    def save(model: object, path: Path, metadata: dict | None) -> None:
        calls.append(path)
        if len(calls) == 1:  # the file the parity check reloads
            real_save(model, path, metadata)
            return
        Path(path).write_bytes(b"PK\x03\x04 half a file")  # the final write
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(exporter, failing, save)
    with pytest.raises(OSError, match="No space left on device"):
        export_checkpoint(tiny_checkpoint, tmp_path / "model.ts")
    assert len(calls) == 2 and calls[1].parent == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt2", "model.ts"]
    for name, content in earlier.items():
        assert (tmp_path / name).read_bytes() == content
