"""Bad manifests stop before training with one report naming every problem's line, column and
value; ``on_error=skip`` drops bad rows instead; ``scripts/check_manifest.py`` checks without
training."""

from __future__ import annotations

import csv
import gzip
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calcinet.cli.check_manifest import main as check_main
from calcinet.data.manifest import ManifestSource
from calcinet.data.validation import DataValidationError
from tests.data.conftest import smooth_volume, write_manifest, write_nifti
from tests.helpers import REPO

EYE = np.diag([1.0, 1.0, 1.0, 1.0])


def _good(folder: Path, name: str, seed: int = 0) -> str:
    write_nifti(folder / name, smooth_volume((10, 10, 10), seed), EYE)
    return name


def _scan(folder: Path, name: str, low: float = -1000.0) -> str:
    """A scan of soft tissue (40 HU) with bone (1200 HU) and, at ``low``, air."""
    volume = np.full((20, 20, 20), 40.0, dtype=np.float32)
    volume[:2] = low
    volume[-2:] = 1200.0
    write_nifti(folder / name, volume, np.diag([0.7, 0.7, 2.0, 1.0]))
    return name


def _all_problems(folder: Path) -> Path:
    """A manifest with one problem of every kind, one per line (line numbers in comments)."""
    write_nifti(folder / "flat.nii.gz", np.zeros((10, 10), np.float32) - 500, EYE)
    write_nifti(folder / "rgb.nii.gz", np.zeros((10, 10, 10, 3), np.float32) - 500, EYE)
    nan = smooth_volume((10, 10, 10))
    nan[1, 2, 3] = np.nan
    write_nifti(folder / "nan.nii.gz", nan, EYE)
    write_nifti(folder / "unit.nii.gz", np.random.default_rng(0).random((10, 10, 10),
                                                                        dtype=np.float32), EYE)
    (folder / "corrupt.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    (folder / "notes.txt").write_text("not an image")
    (folder / "slice.dcm").write_bytes(b"")
    scan, positive = _scan(folder, "scan.nii.gz"), _scan(folder, "positive.nii.gz", low=0.0)
    centre = {"center_x": 5, "center_y": 5, "center_z": 5, "coord_space": "voxel"}
    rows = [
        {"path": "nothere.nii.gz", "label": "benign", "patient_id": "A", "split": "train"},  # 2
        {"path": "corrupt.nii.gz", "label": "benign", "patient_id": "B", "split": "train"},  # 3
        {"path": _good(folder, "g9.nii.gz", 9), "label": "maybe", "patient_id": "C",
         "split": "train"},  # 4
        {"path": "flat.nii.gz", "label": "benign", "patient_id": "D", "split": "train"},  # 5
        {"path": "rgb.nii.gz", "label": "benign", "patient_id": "E", "split": "train"},  # 6
        {"path": "nan.nii.gz", "label": "benign", "patient_id": "F", "split": "train"},  # 7
        {"path": "unit.nii.gz", "label": "benign", "patient_id": "G", "split": "train"},  # 8
        {"path": scan, "label": "malignant", "patient_id": "H", "split": "train",
         **centre, "center_x": 100},  # 9
        {"path": scan, "label": "malignant", "patient_id": "H", "split": "train", **centre},  # 10
        {"path": scan, "label": "malignant", "patient_id": "H", "split": "train", **centre},  # 11
        {"path": "notes.txt", "label": "benign", "patient_id": "I", "split": "train"},  # 12
        {"path": _good(folder, "g8.nii.gz", 8), "label": "benign", "patient_id": "J",
         "split": "holdout"},  # 13
        {"path": _good(folder, "g7.nii.gz", 7), "label": "benign", "patient_id": "",
         "split": "train"},  # 14
        {"path": scan, "label": "benign", "patient_id": "H", "split": "train", **centre,
         "center_y": "abc"},  # 15
        {"path": scan, "label": "benign", "patient_id": "H", "split": "train", **centre,
         "center_z": 7, "coord_space": "ijk"},  # 16
        {"path": "slice.dcm", "label": "benign", "patient_id": "K", "split": "train"},  # 17
        {"path": positive, "label": "benign", "patient_id": "L", "split": "train",
         **centre},  # 18
        {"path": _good(folder, "g0.nii.gz", 0), "label": "benign", "patient_id": "P1",
         "split": "train"},  # 19
        {"path": _good(folder, "g1.nii.gz", 1), "label": "malignant", "patient_id": "P2",
         "split": "train"},  # 20
        {"path": _good(folder, "g2.nii.gz", 2), "label": "benign", "patient_id": "P1",
         "split": "val"},  # 21
        {"path": _good(folder, "g3.nii.gz", 3), "label": "1", "patient_id": "P3",
         "split": "val"},  # 22
        {"path": _good(folder, "g4.nii.gz", 4), "label": "0", "patient_id": "P4",
         "split": "test"},  # 23
        {"path": _good(folder, "g5.nii.gz", 5), "label": "benign", "patient_id": "P5",
         "split": "test"},  # 24
    ]
    return write_manifest(folder / "manifest.csv", rows)


EXPECTED = [
    "line 2, column 'path', value 'nothere.nii.gz': file not found: ",
    "line 3, column 'path', value 'corrupt.nii.gz': cannot be read as NIfTI (",
    "line 4, column 'label', value 'maybe': unknown label; expected benign, malignant, 0 or 1",
    "line 5, column 'path', value 'flat.nii.gz': a 2D image (shape [10, 10]); expected a 3D CT",
    "line 6, column 'path', value 'rgb.nii.gz': image of shape [10, 10, 10, 3]; expected a 3D "
    "volume (one channel",
    "line 7, column 'path', value 'nan.nii.gz': 1 NaN or infinite voxels; expected finite HU",
    "line 8, column 'path', value 'unit.nii.gz': all values within 0.998 of each other (min 0",
    "looks normalised or standardised; expected HU",
    "line 9, column 'center_x', value '100': centre (100, 5, 5) (voxel) lies outside the image "
    "(shape 20x20x20)",
    "line 11, column 'path', value 'scan.nii.gz': same file and centre as line 10; expected each "
    "finding once",
    "line 12, column 'path', value 'notes.txt': unsupported format; expected .nii, .nii.gz",
    "line 13, column 'split', value 'holdout': unknown split; expected train, val or test",
    "line 14, column 'patient_id', value '': empty; expected a patient identifier",
    "line 15, column 'center_y', value 'abc': expected a finite number",
    "line 16, column 'coord_space', value 'ijk': expected world (RAS mm), lps (DICOM mm) or voxel",
    "line 17, column 'path', value 'slice.dcm': an empty file (0 bytes); expected .nii, ",
    "line 18, column 'path', value 'positive.nii.gz': no negative values in a whole scan (min 0)",
    "patient 'P1' is in train (line 19) and val (line 21); expected all findings of a patient in "
    "one split",
]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    manifest = _all_problems(tmp_path)
    with pytest.raises(DataValidationError) as caught:
        ManifestSource(manifest, cache_dir=tmp_path / "cache")
    report = str(caught.value)
    lines = report.splitlines()
    assert lines[0] == f"{manifest}: 17 problems in 16 of 23 rows", report
    for fragment in EXPECTED:
        assert fragment in report, f"missing {fragment!r} in\n{report}"
    assert "Lines are 1-based CSV lines (the header is line 1)" in lines[-1]
    assert isinstance(caught.value, ValueError)


def test_validate_only_reports_without_raising(tmp_path: Path) -> None:
    manifest = _all_problems(tmp_path)
    source = ManifestSource(manifest, validate_only=True)
    assert len(source.problems) == 17
    assert source.validation_report().splitlines()[0].endswith("17 problems in 16 of 23 rows")


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        (["path", "Label"], "line 1: missing required column 'label' (columns found: path, Label)"),
        (["file", "label"], "line 1: missing required column 'path'"),
        (["path", "label", "center_x", "center_y"],
         "line 1, column 'center_z': has center_x, center_y but not center_z; expected all three"),
        (["path", "label", "center_x", "center_y", "center_z"],
         "line 1, column 'coord_space': the center_x/y/z columns need a coord_space column"),
        (["path", "label", "image"], "line 1, column 'image': column name 'image' is used by "
                                     "calcinet itself"),
        (["path", "label", "label"], "line 1, column 'label': column 'label' appears more than "
                                     "once"),
    ],
)
def test_header_problems_are_named(header: list[str], fragment: str, tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(",".join(header) + "\n" + ",".join(["x"] * len(header)) + "\n")
    with pytest.raises(DataValidationError, match="m.csv: ") as caught:
        ManifestSource(manifest)
    assert fragment in str(caught.value), str(caught.value)


def test_missing_manifest_and_ragged_rows_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError) as caught:
        ManifestSource(tmp_path / "nope.csv")
    # No row is at fault: no word of CSV lines or of leaving rows out.
    assert str(caught.value) == (
        f"{tmp_path / 'nope.csv'}: 1 problem\n  manifest not found: {tmp_path / 'nope.csv'}; "
        "expected a CSV file with columns path,label (data.manifest=path/to/manifest.csv)")
    ragged = tmp_path / "r.csv"
    ragged.write_text("path,label\na.nii.gz,benign,extra\n")
    with pytest.raises(DataValidationError, match="line 2: 3 values for 2 columns"):
        ManifestSource(ragged)


def test_skip_drops_bad_rows_and_lists_them(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    rows = [{"path": _good(tmp_path, f"g{i}.nii.gz", i), "label": ("benign", "malignant")[i % 2]}
            for i in range(12)]
    rows[3]["path"] = "missing.nii.gz"
    rows[5]["label"] = "unsure"
    manifest = write_manifest(tmp_path / "m.csv", rows)
    with pytest.raises(DataValidationError):
        ManifestSource(manifest)
    with caplog.at_level(logging.WARNING):
        source = ManifestSource(manifest, on_error="skip")
    assert "data.on_error=skip" in caplog.text and "line 5" in caplog.text
    kept = {r["manifest_line"] for s in ("train", "val", "test") for r in source.records(s)}
    assert kept == set(range(2, 14)) - {5, 7}
    source.write_artifacts(tmp_path / "artifacts")
    with (tmp_path / "artifacts" / "skipped_rows.csv").open() as fh:
        skipped = list(csv.DictReader(fh))
    assert [(r["manifest_line"], r["column"], r["value"]) for r in skipped] == [
        ("5", "path", "missing.nii.gz"), ("7", "label", "unsure")]


def test_warnings_are_counted_as_warnings(tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    rows = [{"path": _good(tmp_path, f"g{i}.nii.gz", i), "label": ("benign", "malignant")[i % 2]}
            for i in range(12)]
    plain = tmp_path / "plain.nii.gz"  # a NIfTI named .gz without compression: read, warned
    plain.write_bytes(gzip.decompress((tmp_path / rows[4]["path"]).read_bytes()))
    rows[4]["path"] = plain.name
    with caplog.at_level(logging.WARNING):
        ManifestSource(write_manifest(tmp_path / "m.csv", rows))
    assert f"{tmp_path / 'm.csv'}: 1 warning in 1 of 12 rows\n  line 6, column 'path', value " \
           "'plain.nii.gz': named .gz but not gzip-compressed" in caplog.text


def test_splits_without_both_classes_stop_training_not_an_evaluation(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"path": _good(tmp_path, f"g{i}.nii.gz", i), "label": "benign", "split": "train"}
            for i in range(4)]
    rows += [{"path": _good(tmp_path, f"t{i}.nii.gz", i), "label": ("benign", "malignant")[i % 2],
              "split": "test"} for i in range(4)]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    source = ManifestSource(manifest, on_error="skip")  # an external test set reads fine
    assert source.class_counts("test") == {0: 2, 1: 2}
    assert check_main([str(manifest), "--for", "evaluation"]) == 0
    assert check_main([str(manifest)]) == 1
    out = capsys.readouterr().out
    assert "the train split holds 4 benign and 0 malignant findings; training needs both" in out
    assert "the val split holds 0 benign and 0 malignant findings" in out


def test_bad_options_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data.on_error='ignore': expected one of raise, skip"):
        ManifestSource(tmp_path / "m.csv", on_error="ignore")
    with pytest.raises(ValueError, match=r"data.val_fraction \+ data.test_fraction = 1.2"):
        ManifestSource(tmp_path / "m.csv", val_fraction=0.6, test_fraction=0.6)


def test_check_reports_and_sets_the_exit_status(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    bad = _all_problems(tmp_path / "bad")
    assert check_main([str(bad)]) == 1
    assert "17 problems" in capsys.readouterr().out
    rows = [{"path": _good(tmp_path, f"g{i}.nii.gz", i), "label": i % 2} for i in range(12)]
    good = write_manifest(tmp_path / "m.csv", rows)
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "check_manifest.py"),
                             str(good)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no problems; 12 findings (train " in result.stdout
    # Clean rows, unusable splits (all benign): the first line does not say "no problems".
    benign = write_manifest(tmp_path / "benign.csv", [{**r, "label": 0} for r in rows])
    assert check_main([str(benign)]) == 1
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"{benign}: no problems in the rows; 12 findings (train ")
    assert printed[1].startswith("  the train split holds 8 benign and 0 malignant findings")


def test_two_rows_may_not_end_with_one_finding_name(tmp_path: Path) -> None:
    """Evaluate and predict name every finding (the id cell, or path and centre): a name two
    rows end with is a problem, whether written or made (6 significant digits, as '%g')."""
    a, b, c = (_good(tmp_path, f"n{i}.nii.gz", i) for i in range(3))
    scan = _scan(tmp_path, "scan.nii.gz")
    centre = {"center_y": 5, "center_z": 5, "coord_space": "voxel"}
    rows = [
        {"path": a, "label": "benign", "id": ""},  # 2: named n0.nii.gz
        {"path": b, "label": "malignant", "id": a},  # 3: the name of line 2
        {"path": scan, "label": "benign", "center_x": 5, **centre},  # 4
        {"path": scan, "label": "malignant", "center_x": 5.0000001, **centre},  # 5: as line 4
        {"path": c, "label": "malignant", "id": "x"},  # 6
    ]
    manifest = write_manifest(tmp_path / "manifest.csv", rows)
    with pytest.raises(DataValidationError) as caught:
        ManifestSource(manifest, cache_dir=tmp_path / "cache")
    report = str(caught.value)
    assert report.splitlines()[0] == f"{manifest}: 2 problems in 2 of 5 rows", report
    assert ("line 3, column 'id', value 'n0.nii.gz': finding named 'n0.nii.gz' as on line 2; "
            "expected unique ids") in report
    assert ("line 5, column 'id', value '': finding named 'scan.nii.gz@voxel:5,5,5' as on line "
            "4 (the name made from its path, centre or mask); expected unique ids") in report
