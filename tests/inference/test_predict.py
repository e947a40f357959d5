"""Predictions from every input kind equal the model applied to the patch cut by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from calcinet.export import ExportResult
from calcinet.inference import Failure, Prediction, expand_inputs, load_model, predict
from calcinet.inference.model import ModelLoadError
from tests.inference.files import (
    phantom_volume,
    write_dicom_series,
    write_nifti,
    write_nrrd_lps,
)

PATCH = (24, 24, 24)


def _by_hand(model_path: Path, patch_ras: np.ndarray) -> float:
    """The probability the saved model gives a ``[24, 24, 24]`` RAS HU patch."""
    model = torch.jit.load(str(model_path))
    with torch.no_grad():
        return float(model(torch.from_numpy(np.ascontiguousarray(patch_ras))[None, None])[0])


def _run(model_path: Path, inputs, **options) -> list[Prediction | Failure]:
    model = load_model(model_path)
    requests, failures = expand_inputs(
        inputs, options.pop("center", None), options.pop("coord_space", "world")
    )
    return [*failures, *predict(model, requests, **options)]


def test_whole_scan_with_centre_in_voxel_and_world_coordinates(
    probe_model: Path, tmp_path: Path
) -> None:
    scan = phantom_volume((60, 50, 40), seed=3)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = [-40.0, 12.5, -300.0]
    path = write_nifti(tmp_path / "scan.nii.gz", scan, affine)
    center = (31, 20, 17)
    world = tuple((affine @ np.array([*center, 1.0]))[:3])
    s = [c - 12 for c in center]
    expected = _by_hand(probe_model, scan[s[0] : s[0] + 24, s[1] : s[1] + 24, s[2] : s[2] + 24])
    shifted = _by_hand(probe_model, scan[s[0] + 1 : s[0] + 25, s[1] : s[1] + 24, s[2] : s[2] + 24])
    assert abs(expected - shifted) > 1e-3  # the probe model notices a one-voxel shift

    by_voxel = _run(probe_model, [path], center=center, coord_space="voxel")
    by_world = _run(probe_model, [path], center=world, coord_space="world")
    assert by_voxel[0].probability == pytest.approx(expected, abs=1e-6)
    assert by_world[0].probability == pytest.approx(expected, abs=1e-6)
    assert by_world[0].request.center == pytest.approx(world)


def test_every_input_kind_gives_the_same_answer(probe_model: Path, tmp_path: Path) -> None:
    # One 24^3 volume at 1.5 mm, stored five ways; RAS world origin (-10, -20, 30).
    hu = phantom_volume(PATCH, seed=5)
    expected = _by_hand(probe_model, hu)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = [-10.0, -20.0, 30.0]
    nifti = write_nifti(tmp_path / "a.nii.gz", hu, affine)
    # NRRD and DICOM in LPS: the same voxels stored with x and y reversed.
    lps_hu = hu[::-1, ::-1, :].copy()
    lps_origin = (10.0 - 23 * 1.5, 20.0 - 23 * 1.5, 30.0)  # the RAS corner (23, 23, 0), in LPS
    nrrd_file = write_nrrd_lps(tmp_path / "a.nrrd", lps_hu, (1.5,) * 3, lps_origin)
    dicom = write_dicom_series(tmp_path / "dicom", lps_hu, (1.5,) * 3, lps_origin)
    np.save(tmp_path / "a.npy", hu)
    rows = _run(probe_model, [nifti, nrrd_file, dicom, tmp_path / "a.npy"], npy_spacing=(1.5,) * 3)
    assert [type(r) for r in rows] == [Prediction] * 4, rows
    for row in rows:
        assert row.probability == pytest.approx(expected, abs=1e-6), row.request.path

    # A folder of such files (the DICOM series inside is one input), and a manifest with centres.
    folder_rows = _run(probe_model, [tmp_path], npy_spacing=(1.5,) * 3)
    assert sorted(r.request.path.name for r in folder_rows) == [
        "a.nii.gz",
        "a.npy",
        "a.nrrd",
        "dicom",
    ]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "path,center_x,center_y,center_z,coord_space\n"
        "a.nii.gz,12,12,12,voxel\n"
        f"dicom,{-10 + 18},{-20 + 18},{30 + 18},world\n"
        f"{nrrd_file},{-(-10 + 18)},{-(-20 + 18)},{30 + 18},lps\n"
        "a.nii.gz,,,,\n"
    )
    manifest_rows = _run(probe_model, [manifest])
    assert [r.probability for r in manifest_rows] == pytest.approx([expected] * 4, abs=1e-6)
    assert manifest_rows[1].request.path == tmp_path / "dicom"


def test_a_bad_input_does_not_stop_the_others(probe_model: Path, tmp_path: Path) -> None:
    hu = phantom_volume(PATCH)
    good = write_nifti(tmp_path / "good.nii.gz", hu, np.diag([1.5, 1.5, 1.5, 1.0]))
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"\x1f\x8bgarbage")
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,center_x,center_y,center_z\ngood.nii.gz,1,2\ngood.nii.gz,99,9,9\n")
    rows = _run(
        probe_model, [good, corrupt, manifest, good], center=(12, 12, 12), coord_space="voxel"
    )
    failures = [r for r in rows if isinstance(r, Failure)]
    assert [type(r) for r in rows if not isinstance(r, Failure)] == [Prediction, Prediction]
    reasons = {f.path: f.reason for f in failures}
    # Manifests are read first; a row's failure is named by its line, then its file.
    assert list(reasons) == [f"{manifest}:2", str(corrupt), f"{manifest}:3"]
    assert reasons[f"{manifest}:2"] == "3 values for 4 columns; expected one value per column"
    assert reasons[str(corrupt)].startswith("cannot be read")
    assert reasons[f"{manifest}:3"].startswith(
        f"{good}: centre [99.0, 9.0, 9.0] (voxel) lies outside the image")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_patch_with_non_finite_voxels_is_refused(probe_model: Path, tmp_path: Path,
                                                   bad: float) -> None:
    """As the training manifest check refuses such files, not a silent probability; NaN outside
    the patch does not matter."""
    hu = phantom_volume((40, 40, 40))
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    inside, outside = hu.copy(), hu.copy()
    inside[18:22, 18:22, 18:22] = bad
    outside[:3] = bad
    rows = _run(probe_model, [write_nifti(tmp_path / "inside.nii.gz", inside, affine),
                              write_nifti(tmp_path / "outside.nii.gz", outside, affine)],
                center=(20, 20, 20), coord_space="voxel")
    failure, prediction = rows
    assert isinstance(failure, Failure) and failure.path == str(tmp_path / "inside.nii.gz")
    assert failure.reason == ("the patch holds 64 NaN or infinite voxels; expected finite HU "
                              "everywhere")
    assert isinstance(prediction, Prediction) and np.isfinite(prediction.probability)


def test_pt2_and_torchscript_agree_on_the_exported_model(
    tiny_export: ExportResult, tmp_path: Path
) -> None:
    hu = phantom_volume(PATCH, seed=9)
    path = write_nifti(tmp_path / "a.nii.gz", hu, np.diag([1.5, 1.5, 1.5, 1.0]))
    ts = _run(tiny_export.torchscript, [path])[0]
    pt2 = _run(tiny_export.program, [path])[0]
    plain = load_model(tiny_export.torchscript, optimize=False)
    assert ts.probability == pytest.approx(_by_hand(tiny_export.torchscript, hu), abs=1e-5)
    assert pt2.probability == pytest.approx(ts.probability, abs=1e-5)
    assert plain(torch.from_numpy(hu)[None, None])[0] == pytest.approx(ts.probability, abs=1e-5)
    threshold = load_model(tiny_export.torchscript).info.threshold
    assert ts.prediction == int(ts.probability >= threshold)
    assert ts.predicted_label == ("malignant" if ts.prediction else "benign")
    assert ts.request.label is None  # a file given directly has no truth


def test_models_without_calcinet_metadata_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.ts"
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(path))
    with pytest.raises(ModelLoadError, match=f"^{path}: no metadata.json inside"):
        load_model(path)
    with pytest.raises(ModelLoadError, match=f"--model-path {tmp_path}: is a folder; expected "
                       "the .ts or .pt2 file calcinet-export wrote"):
        load_model(tmp_path)
    checkpoint = tmp_path / "best.ckpt"
    checkpoint.write_bytes(b"a training checkpoint")
    with pytest.raises(ModelLoadError, match=f"--model-path {checkpoint}: a training checkpoint;"
                       f" .*calcinet-export ckpt_path={checkpoint} writes it"):
        load_model(checkpoint)
    junk = tmp_path / "junk.ts"
    junk.write_text("not a model")
    with pytest.raises(ModelLoadError,
                       match=f"--model-path {junk}: cannot be loaded as a TorchScript"):
        load_model(junk)


def test_a_gpu_the_machine_lacks_is_named_not_the_model(tiny_export: ExportResult) -> None:
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, on any machine
    with pytest.raises(ModelLoadError) as caught:
        load_model(tiny_export.torchscript, missing)
    assert str(caught.value) == (
        f"--device {missing}: torch sees {torch.cuda.device_count()} CUDA GPU(s) on this "
        "machine; expected cpu, auto, or cuda:N with N below that count")
    for other in ("gpu", "mps", "cuda:x"):
        with pytest.raises(ModelLoadError) as caught:
            load_model(tiny_export.torchscript, other)
        assert str(caught.value) == f"--device {other}: expected cpu, auto, cuda or cuda:N"


@pytest.mark.parametrize(("workers", "ahead", "started"), [(2, 0, 5), (2, 16, 21), (1, 8, 11)])
def test_the_reading_threads_read_the_next_batch_ahead(
    probe_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    workers: int, ahead: int, started: int,
) -> None:
    # While the caller holds the first patch (the model running on a batch), the threads go on
    # reading up to 2 * workers + ahead scans past it (here: the first, then that many more).
    import importlib
    import time

    from calcinet.imaging.rows import Location

    module = importlib.import_module("calcinet.inference.predict")  # not the function `predict`

    files = [write_nifti(tmp_path / f"p{i:02d}.nii", phantom_volume(PATCH, seed=i), np.eye(4))
             for i in range(40)]
    read: list[Path] = []
    real = module._scan_items

    def counted(locations, info, npy_spacing):
        read.append(locations[0].path)
        return real(locations, info, npy_spacing)

    monkeypatch.setattr(module, "_scan_items", counted)
    patches = module.load_patches([Location(path=f) for f in files], load_model(probe_model),
                                  (1.0, 1.0, 1.0), workers=workers, ahead=ahead)
    first = next(patches)
    deadline = time.monotonic() + 30
    while len(read) < started and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # nothing more is started while the caller holds the first patch
    assert first[0].path == files[0] and len(read) == started
    assert sorted(read) == files[:started]
    rest = list(patches)
    assert [item[0].path for item in rest] == files[1:] and len(read) == len(files)
