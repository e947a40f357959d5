"""Inputs that are not what they seem: values that are not HU, masks instead of centres, CSV files
saved by Excel. Predict warns (and still writes the row) where training refuses the row."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from calcinet.data.manifest import ManifestSource
from calcinet.data.phantom.materialize import write_dataset
from calcinet.data.sources import phantom_config, split_seed
from calcinet.export import ExportResult
from calcinet.inference import Prediction, expand_inputs, load_model, predict
from tests.data.conftest import patch_rows, write_manifest
from tests.helpers import run_cli
from tests.imaging.real import LUNG, LUNG_MASK, NODULE_LPS, axial_case, real


def _phantom_patches(folder: Path) -> list[Path]:
    """Four of the tiny model's own training patches (``tests.helpers.make_checkpoint``: the
    phantom's train split of seed 0, 24^3 at 1.5 mm), written as calcinet-synth writes them."""
    config = phantom_config((24, 24, 24), (1.5, 1.5, 1.5))
    manifest = write_dataset(folder, 4, split_seed(0, "train"), config)
    with manifest.open() as handle:
        return [folder / row["path"] for row in csv.DictReader(handle)]


def _plus_1024(path: Path, folder: Path) -> Path:
    """The same image saved with stored values: HU + 1024, the rescale intercept left out."""
    image = nib.load(str(path))
    shifted = folder / path.name.replace(".nii.gz", "_stored.nii.gz")
    nib.save(nib.Nifti1Image(image.get_fdata().astype(np.float32) + 1024, image.affine),
             str(shifted))
    return shifted


def test_values_without_the_rescale_are_warned_in_predict_and_in_training(
        tiny_export: ExportResult, tmp_path: Path) -> None:
    profile = tiny_export.metadata["input"]["intensity_profile"]
    assert profile["patches"] > 0 and profile["levels"] == [0.01, 0.5, 0.99]
    patches = _phantom_patches(tmp_path / "phantom")
    stored = [_plus_1024(p, tmp_path) for p in patches]
    model = load_model(tiny_export.torchscript)
    rows = list(predict(model, expand_inputs([*patches, *stored])[0]))
    assert [type(r) for r in rows] == [Prediction] * 8
    assert all(r.warnings == () for r in rows[:4])
    for row in rows[4:]:
        assert any(w.startswith("99 % of voxels above 600 HU") for w in row.warnings)
        assert any(w.startswith("far from the model's training patches: 1% quantile")
                   for w in row.warnings)
        assert 0.0 <= row.probability <= 1.0  # the row is still written

    labelled = [{"path": str(p), "label": ("benign", "malignant")[i % 2]}
                for i, p in enumerate([*patches, *stored])]
    manifest = write_manifest(tmp_path / "manifest.csv", labelled)
    source = ManifestSource(manifest, patch_size=(24, 24, 24), spacing=(1.5, 1.5, 1.5),
                            validate_only=True)
    assert source.problems == []  # warnings only: a patch inside dense bone would look the same
    warned = {w.line for w in source.warnings if "HU + 1024" in w.message}
    assert warned == {6, 7, 8, 9}
    report = source.validation_report().splitlines()
    assert "no problems" in report[0] and report[1].startswith("  warning: line 6, column 'path'")


def test_a_dicom_series_saved_without_its_rescale_is_flagged(
        tiny_export: ExportResult, tmp_path: Path) -> None:
    folder, _ = axial_case(tmp_path, "no_rescale")
    model = load_model(tiny_export.torchscript)
    (row,) = predict(model, expand_inputs([folder], (0.0, 50.0, 760.0), "lps")[0])
    assert any(w.startswith("no negative values in a whole scan (min 0)") for w in row.warnings)
    done = run_cli(["calcinet-predict", "--model", str(tiny_export.torchscript), str(folder),
                    "--center", "0,50,760", "--coord-space", "lps", "--out",
                    str(tmp_path / "out.csv")], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with (tmp_path / "out.csv").open() as handle:
        (written,) = csv.DictReader(handle)
    assert "HU + 1024" in written["warning"] and float(written["probability"]) >= 0


def test_predict_with_a_mask_finds_the_nodule(tiny_export: ExportResult, tmp_path: Path) -> None:
    done = run_cli(["calcinet-predict", "--model", str(tiny_export.torchscript), str(real(LUNG)),
                    "--mask", str(real(LUNG_MASK)), "--out", str(tmp_path / "out.csv")],
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with (tmp_path / "out.csv").open() as handle:
        (row,) = csv.DictReader(handle)
    assert row["component"] == "1" and row["coord_space"] == "world"
    ras = [float(row[c]) for c in ("center_x", "center_y", "center_z")]
    np.testing.assert_allclose(np.multiply(ras, [-1, -1, 1]), NODULE_LPS, atol=0.01)
    # The lung CT holds air and lung, which the phantom never has: predict says so.
    assert "far from the model's training patches" in row["warning"]


def test_a_mask_on_another_grid_is_refused(tiny_export: ExportResult, tmp_path: Path) -> None:
    other = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.uint8), np.eye(4)), str(other))
    done = run_cli(["calcinet-predict", "--model", str(tiny_export.torchscript), str(real(LUNG)),
                    "--mask", str(other)], cwd=tmp_path)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()[:1]
    assert line.startswith(f"calcinet: error: {real(LUNG)}: mask {other}: the mask's grid "
                           "(shape [8, 8, 8]")
    assert line.endswith("expected a label map saved on the image's grid")


@pytest.mark.parametrize("bom", [True, False])
def test_a_manifest_saved_by_excel_reads_the_same(bom: bool, tiny_export: ExportResult,
                                                   tmp_path: Path) -> None:
    rows = patch_rows(tmp_path, 6)
    plain = write_manifest(tmp_path / "plain.csv", rows)
    excel = tmp_path / "excel.csv"
    excel.write_bytes(("\ufeff" if bom else "").encode() + plain.read_bytes())
    model = load_model(tiny_export.torchscript)
    requests, failures = expand_inputs([excel])
    assert failures == [] and [r.path.name for r in requests] == [r["path"] for r in rows]
    assert [r.probability for r in predict(model, requests)] == [
        r.probability for r in predict(model, expand_inputs([plain])[0])]
    source = ManifestSource(excel, patch_size=(12, 12, 12), spacing=(1.0, 1.0, 1.5),
                            val_fraction=0.34, test_fraction=0.34)
    assert sum(len(source.records(s)) for s in ("train", "val", "test")) == 6
