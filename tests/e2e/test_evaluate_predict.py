"""``calcinet-evaluate model_path=model.ts data=manifest`` and ``calcinet-predict --model
model.ts manifest.csv`` give the same probability for every finding of a manifest of real CT
files (DICOM series, NRRD with a mask, NIfTI patches), through the real console scripts."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from calcinet.export import ExportResult
from tests.data.conftest import patch_rows, write_manifest
from tests.helpers import run_cli
from tests.imaging.real import AXIAL, LUNG, LUNG_MASK, real
from tests.inference.conftest import tiny_export  # noqa: F401 - a fixture, used by name


@pytest.mark.slow
def test_evaluate_and_predict_agree_on_every_row(tiny_export: ExportResult,  # noqa: F811
                                                 tmp_path: Path) -> None:
    filler = patch_rows(tmp_path, 8)
    for row, split in zip(filler, ["train", "train", "val", "val", "test", "test", "test",
                                   "test"], strict=True):
        row.update(split=split, id=f"patch-{row['path']}")
    findings = [
        {"path": str(real(AXIAL)), "center_x": 0.0, "center_y": 40.0, "center_z": 760.0,
         "coord_space": "lps", "label": "malignant", "id": "axial"},
        {"path": str(real(LUNG)), "mask": str(real(LUNG_MASK)), "label": "benign",
         "id": "nodule"},
        {"path": str(real(LUNG)), "center_x": -60.0, "center_y": -140.0, "center_z": -600.0,
         "coord_space": "lps", "label": "malignant", "id": "lung"},
    ]
    rows = filler + [{**f, "split": "test", "patient_id": f["id"]} for f in findings]
    manifest = write_manifest(tmp_path / "manifest.csv", rows)
    model = tiny_export.torchscript

    evaluated = run_cli(["calcinet-evaluate", f"model_path={model}", "data=manifest",
                         f"data.manifest={manifest}", "split=test", "bootstrap.n=20",
                         "mlflow.enabled=false", "device=cpu", "data.cache_workers=1",
                         f"hydra.run.dir={tmp_path / 'evaluate'}"], cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    by_evaluate = pd.read_csv(tmp_path / "evaluate" / "predictions.csv").set_index("id")

    predicted = run_cli(["calcinet-predict", "--model-path", str(model), str(manifest),
                         "--output-path", str(tmp_path / "predict.csv")], cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    with (tmp_path / "predict.csv").open() as handle:
        by_predict = {r["id"]: float(r["probability"]) for r in csv.DictReader(handle)}

    assert len(by_evaluate) == 7  # the test split: 4 patches, 3 findings in real scans
    assert {"axial", "nodule#1", "lung"} <= set(by_evaluate.index)
    for finding, probability in by_evaluate["probability"].items():
        assert by_predict[finding] == pytest.approx(probability, abs=1e-4), finding
