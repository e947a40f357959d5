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
from calcinet.inference import Failure, Prediction, expand_inputs, load_model, predict
from tests.data.conftest import patch_rows, write_manifest
from tests.helpers import run_cli
from tests.imaging.real import AXIAL, LUNG, LUNG_MASK, NODULE_LPS, axial_case, real


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
        assert any(w.startswith("no value below 0 HU") for w in row.warnings)
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
    done = run_cli(["calcinet-predict", "--model-path", str(tiny_export.torchscript), str(folder),
                    "--center", "0,50,760", "--coord-space", "lps", "--output-path",
                    str(tmp_path / "out.csv")], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with (tmp_path / "out.csv").open() as handle:
        (written,) = csv.DictReader(handle)
    assert "HU + 1024" in written["warning"] and float(written["probability"]) >= 0


def test_predict_with_a_mask_finds_the_nodule(tiny_export: ExportResult, tmp_path: Path) -> None:
    done = run_cli(["calcinet-predict", "--model-path", str(tiny_export.torchscript),
                    str(real(LUNG)),
                    "--mask", str(real(LUNG_MASK)), "--output-path", str(tmp_path / "out.csv")],
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
    done = run_cli(["calcinet-predict", "--model-path", str(tiny_export.torchscript),
                    str(real(LUNG)),
                    "--mask", str(other)], cwd=tmp_path)
    assert done.returncode == 1
    (line,) = [text for text in done.stderr.splitlines() if text.startswith("calcinet: error")]
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


def test_a_mask_stored_with_its_axes_flipped_gives_the_same_finding(
        tiny_export: ExportResult, tmp_path: Path) -> None:
    import nrrd

    data, header = nrrd.read(str(real(LUNG_MASK)), index_order="F")
    directions = np.asarray(header["space directions"], float)
    flipped = tmp_path / "mask_flipped.nrrd"  # first axis reversed, origin moved to its far end
    nrrd.write(str(flipped), data[::-1].copy(), {
        "space": header["space"], "space directions": directions * [[-1], [1], [1]],
        "space origin": np.asarray(header["space origin"]) + (data.shape[0] - 1) * directions[0]},
        index_order="F")
    model = load_model(tiny_export.torchscript)
    rows = [list(predict(model, expand_inputs([real(LUNG)], mask=m)[0]))[0]
            for m in (real(LUNG_MASK), flipped)]
    assert rows[0].request.center == pytest.approx(rows[1].request.center, abs=1e-6)
    assert rows[0].probability == pytest.approx(rows[1].probability, abs=1e-6)


def test_predict_reads_a_manifests_centres_as_training_does(
        tiny_export: ExportResult, tmp_path: Path) -> None:
    row = {"path": str(real(LUNG)), "center_x": -21.86, "center_y": -120.54, "center_z": -611.5}
    manifest = write_manifest(tmp_path / "no_space.csv", [row])
    requests, failures = expand_inputs([manifest])
    assert requests == [] and failures[0].reason.startswith(
        "the center_x/y/z columns need a coord_space column (world, lps or voxel), as in training")
    requests, failures = expand_inputs([manifest], coord_space="lps")  # said for every row
    assert failures == [] and requests[0].coord_space == "lps"
    # A bad row is named by its manifest line, the file after it.
    bad = write_manifest(tmp_path / "bad.csv", [{**row, "coord_space": "lps"},
                                                {**row, "center_x": 900.0, "coord_space": "lps"}])
    model = load_model(tiny_export.torchscript)
    out = list(predict(model, expand_inputs([bad])[0]))
    (failure,) = [r for r in out if isinstance(r, Failure)]
    assert len(out) == 2 and failure.path == f"{bad}:3"
    assert failure.reason.startswith(f"{real(LUNG)}: centre [900.0, -120.54, -611.5] (lps) lies "
                                    "outside the image (voxel [")


def test_a_folder_with_a_series_and_other_files_predicts_them_all(
        tiny_export: ExportResult, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for file in sorted(real(AXIAL).iterdir()):
        (folder / file.name).write_bytes(file.read_bytes())
    patch = _phantom_patches(tmp_path / "phantom")[0]
    (folder / patch.name).write_bytes(patch.read_bytes())
    inner = folder / "more"
    inner.mkdir()
    (inner / "copy.nii.gz").write_bytes(patch.read_bytes())
    requests, failures = expand_inputs([folder])
    assert failures == []
    assert sorted(r.path for r in requests) == [folder, inner / "copy.nii.gz", folder / patch.name]


def test_negative_centres_and_masks_on_the_command_line(
        tiny_export: ExportResult, tmp_path: Path) -> None:
    model = str(tiny_export.torchscript)
    done = run_cli(["calcinet-predict", "--model-path", model, str(real(LUNG)), "--center",
                    "-21.86,-120.54,-611.5", "--coord-space", "lps"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "-21.86" in done.stdout
    manifest = write_manifest(tmp_path / "m.csv", [{"path": str(real(LUNG))}])
    done = run_cli(["calcinet-predict", "--model-path", model, str(manifest), "--mask",
                    str(real(LUNG_MASK))], cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().endswith(
        "a manifest gives masks in its mask column")


def test_each_scan_is_read_once_and_rows_keep_their_order(
        tiny_export: ExportResult, tmp_path: Path) -> None:
    """Rows of one scan scattered through the request list: the scan is opened once (counted by
    Python's own ``open`` audit event), and every worker count gives the rows in request order,
    a missing file failing on its own line."""
    import sys

    from calcinet.imaging import read_volume
    from calcinet.imaging.rows import Location

    patches = _phantom_patches(tmp_path / "phantom")
    scan, other = patches[0], patches[1]
    missing = tmp_path / "missing.nii.gz"
    requests = [Location(scan, (0.0, 0.0, 0.0)), Location(other), Location(missing),
                Location(scan, (3.0, -3.0, 1.5)), Location(scan), Location(other, (1.5, 0, 0))]
    opened: list[str] = []

    def count(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], str | Path) and Path(args[0]) == scan:
            opened.append(event)

    sys.addaudithook(count)  # hooks cannot be removed; it only counts opens of this one file
    read_volume(scan)
    per_read = len(opened)  # nibabel opens a file more than once to read it
    assert per_read > 0
    model = load_model(tiny_export.torchscript)
    results = {}
    for workers in (0, 1, 3):
        before = len(opened)
        results[workers] = list(predict(model, requests, batch_size=2, workers=workers))
        assert len(opened) - before == per_read, workers
    reference = results[0]
    assert [type(r) for r in reference] == [Prediction, Prediction, Failure, Prediction,
                                             Prediction, Prediction]
    assert [r.request for r in reference if isinstance(r, Prediction)] == [
        requests[i] for i in (0, 1, 3, 4, 5)]
    for workers in (1, 3):
        assert [r.probability if isinstance(r, Prediction) else r.path
                for r in results[workers]] == [
            r.probability if isinstance(r, Prediction) else r.path for r in reference]
    alone = list(predict(model, [requests[3]], workers=0))[0]
    assert alone.probability == pytest.approx(reference[3].probability, abs=1e-6)


def test_a_scan_given_as_its_own_mask_is_refused(tiny_export: ExportResult,
                                                 tmp_path: Path) -> None:
    # The lung CT in HU on its own grid: every non-air voxel would be "foreground", the body one
    # component. A label map holds whole numbers >= 0; HU go down to -1024.
    import nrrd

    values, _ = nrrd.read(str(real(LUNG)), index_order="F")
    done = run_cli(["calcinet-predict", "--model-path", str(tiny_export.torchscript),
                    str(real(LUNG)), "--mask", str(real(LUNG)), "--output-path",
                    str(tmp_path / "out.csv")], cwd=tmp_path)
    assert done.returncode == 1
    negative = int((values < 0).sum())
    line = next(line for line in done.stderr.splitlines() if "mask" in line)
    assert line.startswith(f"calcinet: error: {real(LUNG)}: mask {real(LUNG)}: {negative} voxels "
                           "hold values that are no labels (such as ")
    assert line.endswith(f"the mask spans {values.min():g} to {values.max():g}); expected a "
                         "label map of whole numbers >= 0 (0 background): is this the scan, or a "
                         "probability map to threshold first?")


def test_a_manifest_row_named_as_an_earlier_one_fails_and_the_others_run(tmp_path: Path) -> None:
    """Predict names the findings as evaluate does, and refuses a second row with one name (the
    id cell, or the name made from path and centre) as the manifest check does."""
    rows = patch_rows(tmp_path, 3)
    rows[0]["id"], rows[1]["id"], rows[2]["id"] = "x", "x", ""
    rows.append({**rows[2]})  # the same file, no id: named by its path, as line 4
    manifest = write_manifest(tmp_path / "manifest.csv", rows)
    found, failures = expand_inputs([manifest])
    assert [f.id for f in found] == ["x", rows[2]["path"]]
    assert [f.path for f in failures] == [f"{manifest}:3", f"{manifest}:5"]
    assert failures[0].reason == ("column 'id': finding named 'x' as on line 2; expected unique "
                                  "ids, as calcinet-evaluate requires")
    assert failures[1].reason.startswith(f"column 'id': finding named {rows[2]['path']!r} as on "
                                         "line 4 (the name made from its path, centre or mask)")
