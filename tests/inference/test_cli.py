"""``calcinet-predict`` end to end: a phantom dataset folder, a bad input among good ones."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from calcinet.data.phantom.materialize import write_dataset
from calcinet.data.sources import phantom_config
from calcinet.export import ExportResult
from tests.helpers import run_cli


def test_predicts_a_folder_of_nifti_patches_and_reports_bad_inputs(
    tiny_export: ExportResult, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    write_dataset(data, 4, 0, phantom_config((24, 24, 24), (1.5, 1.5, 1.5)))
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"\x1f\x8bnot an image")
    out = tmp_path / "predictions.csv"
    done = run_cli(
        [
            "calcinet-predict",
            "--model-path",
            str(tiny_export.torchscript),
            str(data / "images"),
            str(corrupt),
            "--output-path",
            str(out),
            "--batch-size",
            "3",
        ],
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("calcinet: error:")]
    assert len(errors) == 1 and errors[0].startswith(f"calcinet: error: {corrupt}: cannot be read")

    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    images = sorted((data / "images").glob("*.nii.gz"))
    assert [r["path"] for r in rows] == [str(p) for p in images]
    assert list(rows[0]) == ["path", "probability", "prediction", "label", "warning"]
    model = torch.jit.load(str(tiny_export.torchscript))
    threshold = tiny_export.metadata["decision"]["threshold"]
    for row, image in zip(rows, images, strict=True):
        hu = torch.from_numpy(np.asarray(nib.load(image).dataobj, np.float32))[None, None]
        with torch.no_grad():
            expected = float(model(hu)[0])
        assert float(row["probability"]) == pytest.approx(expected, abs=2e-6)
        assert int(row["prediction"]) == int(float(row["probability"]) >= threshold)
        assert row["label"] == ("malignant" if int(row["prediction"]) else "benign")
        assert row["warning"] == ""  # phantom patches, like the training data: nothing to say

    done = run_cli(
        ["calcinet-predict", "--model-path", str(tiny_export.torchscript),
         str(data / "manifest.csv")],
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split() == [
        "path", "probability", "prediction", "label", "warning"]
    assert len(done.stdout.splitlines()) == 5


def test_bad_model_exits_2_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "model.ts"
    done = run_cli(["calcinet-predict", "--model-path", str(missing), "scan.nii.gz"], cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"calcinet: error: --model-path {missing}: no such file; expected "
        "a .ts or .pt2 file written by calcinet-export"
    )
