"""``calcinet-evaluate model_path=model.ts data=manifest`` and ``calcinet-predict --model
model.ts manifest.csv`` give the same probability for every finding of a manifest of real CT
files (DICOM series, NRRD with a mask, NIfTI patches), through the real console scripts."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest
import torch

from calcinet.export import ExportResult
from calcinet.export.checkpoint import CheckpointInfo
from calcinet.export.metadata import build_metadata
from calcinet.export.torchscript import save_torchscript
from tests.data.conftest import patch_rows, write_manifest
from tests.helpers import run_cli
from tests.imaging.real import AXIAL, LUNG, LUNG_MASK, real
from tests.inference.conftest import (
    PATCH,
    SPACING,
    WINDOW,
    tiny_export,  # noqa: F401 - a fixture, used by name
)

# Names of the findings whose rows give no id: the row as written, the mask's component after '#'.
NODULE = f"{LUNG}@mask:{LUNG_MASK}#1"
LUNG_LPS = f"{LUNG}@lps:-60,-140,-600"


def _manifest(folder: Path) -> Path:
    filler = patch_rows(folder, 8)
    for row, split in zip(filler, ["train", "train", "val", "val", "test", "test", "test",
                                   "test"], strict=True):
        row.update(split=split, id=f"patch-{row['path']}")
    findings = [
        {"path": str(real(AXIAL)), "center_x": 0.0, "center_y": 40.0, "center_z": 760.0,
         "coord_space": "lps", "label": "malignant", "id": "axial"},
        # No id: both commands name these findings from the row (NODULE and LUNG_LPS below).
        {"path": str(real(LUNG)), "mask": str(real(LUNG_MASK)), "label": "benign"},
        {"path": str(real(LUNG)), "center_x": -60.0, "center_y": -140.0, "center_z": -600.0,
         "coord_space": "lps", "label": "malignant"},
    ]
    rows = filler + [{**f, "split": "test", "patient_id": f.get("id", "lung-ct")}
                     for f in findings]
    return write_manifest(folder / "manifest.csv", rows)


def _evaluate_and_predict(model: Path, manifest: Path, folder: Path
                          ) -> tuple[pd.Series, dict[str, float]]:
    """The probability of each test finding by ``calcinet-evaluate`` and ``calcinet-predict``."""
    evaluated = run_cli(["calcinet-evaluate", f"model_path={model}", "data=manifest",
                         f"data.manifest={manifest}", "split=test", "bootstrap.n=20",
                         "mlflow.enabled=false", "device=cpu", "data.cache_workers=1",
                         f"hydra.run.dir={folder / 'evaluate'}"], cwd=folder)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    by_evaluate = pd.read_csv(folder / "evaluate" / "predictions.csv").set_index("id")
    predicted = run_cli(["calcinet-predict", "--model-path", str(model), str(manifest),
                         "--output-path", str(folder / "predict.csv")], cwd=folder)
    assert predicted.returncode == 0, predicted.stderr
    with (folder / "predict.csv").open() as handle:
        by_predict = {r["id"]: float(r["probability"]) for r in csv.DictReader(handle)}
    assert len(by_evaluate) == 7  # the test split: 4 patches, 3 findings in real scans
    assert {"axial", NODULE, LUNG_LPS} <= set(by_evaluate.index)
    assert set(by_evaluate.index) <= set(by_predict)  # one name per finding on both paths
    return by_evaluate["probability"], by_predict


@pytest.mark.slow
def test_evaluate_and_predict_agree_on_every_row(tiny_export: ExportResult,  # noqa: F811
                                                 tmp_path: Path) -> None:
    by_evaluate, by_predict = _evaluate_and_predict(tiny_export.torchscript,
                                                    _manifest(tmp_path), tmp_path)
    for finding, probability in by_evaluate.items():
        assert by_predict[finding] == pytest.approx(probability, abs=1e-4), finding


class _LowestHU(torch.nn.Module):
    """A model in the export format that reads raw HU without windowing them: its output is the
    patch's lowest HU (air at -1000 in a lung patch, below the training window's -200)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x.amin(dim=(1, 2, 3, 4)) / 1000.0)


@pytest.mark.slow
def test_evaluate_gives_an_exported_model_the_hu_predict_gives_it(tmp_path: Path) -> None:
    # The exported model's input is raw HU ("Export" in the README): evaluate feeds it the same
    # patch as predict, not one clipped to the window (calcinet's own exports window inside, so
    # only a model that looks outside the window tells the two apart).
    stand_in = tmp_path / "probe.ckpt"
    stand_in.write_bytes(b"probe")
    info = CheckpointInfo(path=stand_in, network={"name": "lowest-hu"}, patch_size=list(PATCH),
                          spacing=list(SPACING), hu_window=list(WINDOW),
                          class_names=["benign", "malignant"], operating_point="youden",
                          target_sensitivity=0.95, run={})
    model = tmp_path / "lowest_hu.ts"
    save_torchscript(torch.jit.script(_LowestHU().eval()), model,
                     build_metadata(info, (0.5, 0.3), "script"))
    by_evaluate, by_predict = _evaluate_and_predict(model, _manifest(tmp_path), tmp_path)
    for finding, probability in by_evaluate.items():
        assert by_predict[finding] == pytest.approx(probability, abs=1e-7), finding
    # The lung finding's patch holds air: below the window, so clipping would have shown.
    assert by_evaluate[LUNG_LPS] == pytest.approx(torch.sigmoid(torch.tensor(-1.0)).item(),
                                                abs=0.03)
