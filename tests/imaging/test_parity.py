"""One finding, one patch: training/evaluation and ``calcinet-predict`` cut the same patch from
real CT files and the odd cases derived from them, and the patch sits where the file headers say.

For every readable case: the patch of the training chain (manifest source -> MONAI transforms)
equals the patch predict cuts (<= 1e-3 HU inside the model's window), and a marker written into
the image lands within half a voxel of the world point computed from the header by pydicom,
pynrrd or nibabel. Refused cases give one line each, and the other inputs of the same command
still run.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from calcinet.data.manifest import ManifestSource
from calcinet.data.transforms import build_transforms
from calcinet.imaging import cut_patch, read_volume
from calcinet.imaging.rows import Location
from calcinet.inference import Failure, load_model
from calcinet.inference.predict import load_patches
from tests.data.conftest import patch_rows, write_manifest
from tests.helpers import run_cli
from tests.imaging.real import (
    AXIAL,
    COLOUR,
    ENCODINGS,
    ENHANCED,
    GAP,
    LUNG,
    LUNG_MASK,
    NODULE_LPS,
    SLICE,
    axial_case,
    lung_marked,
    marker_voxel,
    nifti_marked,
    real,
)
from tests.inference.conftest import PATCH, SPACING, WINDOW

LPS = np.array([-1.0, -1.0, 1.0])


def _axial(name: str) -> Callable[[Path], tuple[dict, np.ndarray | None, Path | None]]:
    def build(folder: Path) -> tuple[dict, np.ndarray | None, Path | None]:
        path, lps = axial_case(folder, name)
        row = {"path": str(path), "center_x": lps[0], "center_y": lps[1], "center_z": lps[2],
               "coord_space": "lps"}
        return row, lps * LPS, real(AXIAL)
    return build


def _lung(space: str | None) -> Callable[[Path], tuple[dict, np.ndarray | None, Path | None]]:
    def build(folder: Path) -> tuple[dict, np.ndarray | None, Path | None]:
        path, lps = lung_marked(folder, space)
        row = {"path": str(path), "center_x": lps[0], "center_y": lps[1], "center_z": lps[2],
               "coord_space": "lps"}
        return row, lps * LPS, real(LUNG)
    return build


def _nifti(spacing: tuple[float, float, float], flips: tuple[int, int, int]
           ) -> Callable[[Path], tuple[dict, np.ndarray | None, Path | None]]:
    def build(folder: Path) -> tuple[dict, np.ndarray | None, Path | None]:
        path, ras = nifti_marked(folder, spacing, flips)
        plain, _ = nifti_marked(folder, spacing, flips, marker=False)
        row = {"path": str(path), "center_x": ras[0], "center_y": ras[1], "center_z": ras[2],
               "coord_space": "world"}
        return row, ras, plain
    return build


def _enhanced(folder: Path) -> tuple[dict, np.ndarray | None, Path | None]:
    file = real(ENHANCED / "CT0012.fragmented_no_bot_jpeg_ls.80.dcm")
    return {"path": str(file), "center_x": 256, "center_y": 250, "center_z": 0.5,
            "coord_space": "voxel"}, None, None


def _mask(folder: Path) -> tuple[dict, np.ndarray | None, Path | None]:
    return {"path": str(real(LUNG)), "mask": str(real(LUNG_MASK))}, None, None


CASES = {
    "dicom series": _axial("marked"),
    "dicom, InstanceNumber reversed": _axial("reversed"),
    "dicom, InstanceNumber interleaved": _axial("interleaved"),
    "nrrd lps": _lung("left-posterior-superior"),
    "nrrd without space": _lung(None),
    "nrrd las": _lung("left-anterior-superior"),
    "nrrd ras": _lung("right-anterior-superior"),
    "nifti 0.5 mm": _nifti((0.5, 0.5, 0.5), (1, 1, 1)),
    "nifti 0.8 mm, flipped": _nifti((0.8, 0.8, 0.8), (-1, 1, -1)),
    "nifti 0.7 x 0.7 x 2.5 mm": _nifti((0.7, 0.7, 2.5), (1, -1, 1)),
    "enhanced ct (jpeg-ls)": _enhanced,
    "mask component": _mask,
}


def _training_source(folder: Path, row: dict) -> ManifestSource:
    """A manifest with ``row`` in train and small NIfTI patches filling every split."""
    filler = patch_rows(folder / "filler", 6)
    splits = ["train", "val", "val", "test", "test", "train"]
    rows = [{**row, "label": "malignant", "patient_id": "case", "split": "train"}]
    rows += [{**r, "path": f"filler/{r['path']}", "split": s} for r, s in zip(filler, splits,
                                                                               strict=True)]
    return ManifestSource(write_manifest(folder / "manifest.csv", rows), patch_size=PATCH,
                          spacing=SPACING)


@pytest.mark.parametrize("case", list(CASES))
def test_training_and_predict_cut_the_same_patch_where_the_header_says(
        case: str, probe_model: Path, tmp_path: Path) -> None:
    row, marker_world, plain = CASES[case](tmp_path / "case")
    source = _training_source(tmp_path, row)
    records = [r for r in source.records("train") if r["patient_id"] == "case"]
    chain = build_transforms(source.load_transforms(), PATCH, SPACING, WINDOW)
    trained = [chain(dict(r))["image"][0].numpy() for r in records]

    location = Location(Path(row["path"]),
                        tuple(row[c] for c in ("center_x", "center_y", "center_z"))
                        if "center_x" in row else None, row.get("coord_space", "world"),
                        Path(row["mask"]) if "mask" in row else None)
    predicted = list(load_patches([location], load_model(probe_model), (1.0, 1.0, 1.0)))
    assert not any(isinstance(p, Failure) for p in predicted), predicted
    assert len(predicted) == len(trained) == 1
    low, high = WINDOW
    windowed = np.clip((predicted[0][1][0].numpy() - low) / (high - low), 0.0, 1.0)
    assert np.abs(windowed - trained[0]).max() * (high - low) <= 1e-3

    if marker_world is not None:  # the marker is where the header puts it, within half a voxel
        volume, reference = read_volume(Path(row["path"])), read_volume(plain)
        patch = cut_patch(volume, PATCH, SPACING, marker_world, "world")
        plain_patch = cut_patch(reference, PATCH, SPACING, marker_world, "world")
        found = marker_voxel(patch.values[0].numpy(), plain_patch.values[0].numpy())
        world = (patch.affine @ np.append(found, 1.0))[:3]
        assert np.all(np.abs(world - marker_world) <= 0.5 * np.asarray(SPACING)), world
        assert np.all(np.abs(patch.center_world - marker_world) <= 0.5 * np.asarray(SPACING))


def test_mask_component_is_the_nodule_of_the_readme(tmp_path: Path) -> None:
    source = _training_source(tmp_path, {"path": str(real(LUNG)), "mask": str(real(LUNG_MASK))})
    (record,) = [r for r in source.records("train") if r["patient_id"] == "case"]
    assert record["id"] == f"{real(LUNG)}@mask:{real(LUNG_MASK)}#1" and record["component"] == 1
    centre = np.asarray(record["finding"]["center"]) * LPS  # world (RAS) -> LPS
    np.testing.assert_allclose(centre, NODULE_LPS, atol=0.01)


def test_two_masks_of_one_scan_give_findings_of_their_own(tmp_path: Path) -> None:
    # Two segmentations of the lung CT's nodule (two readers, the second one's a little
    # smaller): component 1 in each, so the mask is part of each finding's id.
    import nrrd

    labels, header = nrrd.read(str(real(LUNG_MASK)), index_order="F")
    smaller = labels.copy()
    first_slice = np.flatnonzero(smaller.any(axis=(0, 1)))[0]
    smaller[:, :, first_slice] = 0
    second = tmp_path / "reader2_label.nrrd"
    nrrd.write(str(second), smaller, header, index_order="F")
    filler = patch_rows(tmp_path / "filler", 6)
    splits = ["train", "val", "val", "test", "test", "train"]
    rows = [{"path": str(real(LUNG)), "mask": str(mask), "label": "malignant",
             "patient_id": "case", "split": "train"} for mask in (real(LUNG_MASK), second)]
    rows += [{**r, "path": f"filler/{r['path']}", "split": s} for r, s in zip(filler, splits,
                                                                               strict=True)]
    source = ManifestSource(write_manifest(tmp_path / "manifest.csv", rows), patch_size=PATCH,
                            spacing=SPACING)
    ids = [r["id"] for r in source.records("train") if r["patient_id"] == "case"]
    assert ids == [f"{real(LUNG)}@mask:{real(LUNG_MASK)}#1", f"{real(LUNG)}@mask:{second}#1"]
    assert source.problems == []


REFUSED = {
    "gap": (lambda folder: real(GAP), "a gap of 202.50 mm"),
    "removed slice": (lambda folder: axial_case(folder, "removed")[0], "a gap of 10.00 mm"),
    "duplicated slice": (lambda folder: axial_case(folder, "duplicated")[0],
                         "at one position"),
    "two series": (lambda folder: axial_case(folder, "two_series")[0], "2 DICOM series"),
    "tilted": (lambda folder: axial_case(folder, "tilted")[0], "gantry tilt 5.00 degrees"),
    "three encodings": (lambda folder: real(ENCODINGS), "at one position"),
    "colour": (lambda folder: real(COLOUR), "a colour image"),
    "single file": (lambda folder: real(SLICE), "a single 2D slice"),
}


def test_refused_inputs_get_one_line_each_and_the_others_still_run(
        probe_model: Path, tmp_path: Path) -> None:
    readable, _ = axial_case(tmp_path, "marked")
    refused = {name: build(tmp_path) for name, (build, _) in REFUSED.items()}
    done = run_cli(["calcinet-predict", "--model-path", str(probe_model), str(readable),
                    *map(str, refused.values()), "--output-path", str(tmp_path / "out.csv")],
                   cwd=tmp_path, timeout=600)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("calcinet: error: ")]
    assert len(errors) == len(REFUSED)
    for (name, path), line in zip(refused.items(), errors, strict=True):
        assert line.startswith(f"calcinet: error: {path}: ") and REFUSED[name][1] in line, line
        assert "expected" in line
    with (tmp_path / "out.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["path"] for r in rows] == [str(readable)]


def test_check_manifest_names_every_refused_row(tmp_path: Path) -> None:
    refused = {name: build(tmp_path) for name, (build, _) in REFUSED.items()}
    filler = patch_rows(tmp_path, 6)
    rows = [{**r, "split": s} for r, s in zip(filler, ["train", "val", "val", "test", "test",
                                                       "train"], strict=True)]
    rows += [{"path": str(path), "label": "benign", "patient_id": name, "split": "train"}
             for name, path in refused.items()]
    manifest = write_manifest(tmp_path / "manifest.csv", rows)
    done = run_cli(["calcinet-check-manifest", str(manifest)], cwd=tmp_path, timeout=600)
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
    for line, (name, path) in enumerate(refused.items(), start=8):
        expected = f"line {line}, column 'path', value '{path}': "
        found = [text for text in done.stdout.splitlines() if expected in text]
        assert len(found) == 1 and REFUSED[name][1] in found[0], (name, done.stdout)


def test_two_masks_refused_on_one_scan_are_two_problems_not_a_duplicate(tmp_path: Path) -> None:
    import nibabel as nib

    from calcinet.data.validation import DataValidationError

    scan = np.full((30, 30, 30), -1000, np.int16)
    scan[5:25, 5:25, 5:25] = 40  # soft tissue in air
    nib.Nifti1Image(scan, np.eye(4)).to_filename(tmp_path / "scan.nii.gz")
    for name in ("reader1.nii.gz", "reader2.nii.gz"):  # on another grid
        nib.Nifti1Image(np.ones((20, 20, 20), np.uint8), np.eye(4)).to_filename(tmp_path / name)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,mask,label\nscan.nii.gz,reader1.nii.gz,0\n"
                        "scan.nii.gz,reader2.nii.gz,1\n")
    with pytest.raises(DataValidationError) as caught:
        ManifestSource(manifest, patch_size=PATCH, spacing=SPACING)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{manifest}: 2 problems in 2 of 2 rows"
    assert [line.split(":")[0] for line in lines[1:3]] == [
        "  line 2, column 'mask', value 'reader1.nii.gz'",
        "  line 3, column 'mask', value 'reader2.nii.gz'"]
    assert "same file" not in str(caught.value)
