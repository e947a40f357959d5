"""``calcinet-predict`` end to end: a phantom dataset folder, a bad input among good ones."""

from __future__ import annotations

import csv
import signal
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from calcinet.data.phantom.materialize import write_dataset
from calcinet.data.sources import phantom_config
from calcinet.export import ExportResult
from tests.helpers import popen_cli, run_cli


def _phantom_data(folder: Path, count: int) -> Path:
    """``count`` phantom patches of 24^3 at 1.5 mm in ``folder/images``, with their manifest."""
    write_dataset(folder, count, 0, phantom_config((24, 24, 24), (1.5, 1.5, 1.5)))
    return folder


def test_predicts_a_folder_of_nifti_patches_and_reports_bad_inputs(
    tiny_export: ExportResult, tmp_path: Path
) -> None:
    data = _phantom_data(tmp_path / "data", 4)
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
    # Files given directly carry no truth: no label column.
    assert list(rows[0]) == ["path", "probability", "prediction", "predicted_label", "warning"]
    model = torch.jit.load(str(tiny_export.torchscript))
    threshold = tiny_export.metadata["decision"]["threshold"]
    for row, image in zip(rows, images, strict=True):
        hu = torch.from_numpy(np.asarray(nib.load(image).dataobj, np.float32))[None, None]
        with torch.no_grad():
            expected = float(model(hu)[0])
        assert float(row["probability"]) == pytest.approx(expected, abs=2e-6)
        assert int(row["prediction"]) == int(float(row["probability"]) >= threshold)
        assert row["predicted_label"] == ("malignant" if int(row["prediction"]) else "benign")
        assert row["warning"] == ""  # phantom patches, like the training data: nothing to say

    done = run_cli(
        ["calcinet-predict", "--model-path", str(tiny_export.torchscript),
         str(data / "manifest.csv")],
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    # The rows own stdout; the run's messages go to stderr.
    assert done.stderr.split() == ["Predicting", "4", "finding(s)", "with",
                                   str(tiny_export.torchscript), "(threshold",
                                   f"{float(threshold)!r}:", "malignant", "at", "probability",
                                   ">=", "threshold)"]
    table = [line.split() for line in done.stdout.splitlines()]
    # Manifest rows with a label: the truth as 0/1, and each finding named as calcinet-evaluate's
    # predictions.csv names it (a row without id nor centre: its path as written).
    assert table[0] == ["id", "path", "label", "probability", "prediction", "predicted_label",
                        "warning"]
    with (data / "manifest.csv").open() as handle:
        written = list(csv.DictReader(handle))
    truth = [("benign", "malignant").index(r["label"]) for r in written]
    assert [int(line[2]) for line in table[1:]] == truth
    assert [line[0] for line in table[1:]] == [r["path"] for r in written]
    assert len(table) == 5

    # --output-path -: the same rows as CSV on stdout, no log file.
    done = run_cli(["calcinet-predict", "--model-path", str(tiny_export.torchscript),
                    str(data / "manifest.csv"), "--output-path", "-"], cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(done.stdout.splitlines()))
    assert [int(r["label"]) for r in rows] == truth and not (tmp_path / "-").exists()

    # --quiet: the rows only, the log beside the CSV holds the run's messages.
    out = tmp_path / "quiet.csv"
    done = run_cli(["calcinet-predict", "--model-path", str(tiny_export.torchscript),
                    str(data / "images"), str(corrupt), "--output-path", str(out), "--quiet"],
                   cwd=tmp_path, timeout=300)
    assert done.returncode == 1
    assert done.stdout == ""
    assert [line.split(":")[1] for line in done.stderr.splitlines()] == [" error", " warning"]
    logged = out.with_suffix(".log").read_text()
    assert f"Wrote 4 prediction(s) to {out}" in logged and f"{corrupt}: cannot be read" in logged


def test_old_option_spellings_still_work_with_one_warning_each(
    tiny_export: ExportResult, tmp_path: Path
) -> None:
    data = _phantom_data(tmp_path / "data", 2)
    new, old = tmp_path / "new.csv", tmp_path / "old.csv"
    common = [str(data / "images"), "--batch-size", "2"]
    done_new = run_cli(["calcinet-predict", "--model-path", str(tiny_export.torchscript),
                        *common, "--num-workers", "0", "--output-path", str(new)], cwd=tmp_path)
    done_old = run_cli(["calcinet-predict", "--model", str(tiny_export.torchscript), *common,
                        "--workers", "0", "--out", str(old)], cwd=tmp_path)
    assert done_new.returncode == 0 and done_new.stderr == ""
    assert done_old.returncode == 0
    assert done_old.stderr.splitlines() == [
        "calcinet-predict: warning: --model is deprecated; use --model-path",
        "calcinet-predict: warning: --workers is deprecated; use --num-workers",
        "calcinet-predict: warning: --out is deprecated; use --output-path",
    ]
    assert old.read_text() == new.read_text()
    # Unix line ends, as pandas writes evaluate's predictions.csv (the csv module's are \r\n).
    assert b"\r" not in new.read_bytes() and b"\r" not in (data / "manifest.csv").read_bytes()
    help_text = run_cli(["calcinet-predict", "--help"], cwd=tmp_path).stdout
    assert "--model-path" in help_text and "--model " not in help_text
    assert "--out " not in help_text and "--workers" not in help_text


def test_show_metadata_into_a_closed_pipe_ends_quietly(
    tiny_export: ExportResult, tmp_path: Path
) -> None:
    from calcinet.cli import BROKEN_PIPE
    from tests.e2e.test_cli_conventions import closed_pipe

    done = closed_pipe(["calcinet-predict", "--model-path", str(tiny_export.torchscript),
                        "--show-metadata"], tmp_path)
    assert done.stderr == ""
    assert done.returncode == BROKEN_PIPE


def test_missing_model_path_exits_2(tmp_path: Path) -> None:
    done = run_cli(["calcinet-predict", "scan.nii.gz"], cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "calcinet-predict: error: the following arguments are required: --model-path")


def test_bad_model_exits_2_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "model.ts"
    done = run_cli(["calcinet-predict", "--model-path", str(missing), "scan.nii.gz"], cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"calcinet: error: --model-path {missing}: no such file; expected "
        "a .ts or .pt2 file written by calcinet-export"
    )


def test_an_output_whose_log_cannot_be_written_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "rows.log").mkdir()  # the log beside rows.csv cannot be opened
    model = tmp_path / "model.ts"
    model.write_bytes(b"")
    done = run_cli(["calcinet-predict", "--model-path", str(model), "scan.nii.gz",
                    "--output-path", str(tmp_path / "rows.csv")], cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"calcinet: error: {tmp_path / 'rows.log'}: the log beside the output cannot be written "
        "(Is a directory); expected a folder you can write")


def test_an_output_path_that_cannot_take_the_rows_exits_2_before_anything_is_read(
    tiny_export: ExportResult, tmp_path: Path
) -> None:
    """A folder (also one not made yet, named with a trailing slash), the model, an INPUT, an
    image (a file a folder INPUT, a manifest or a mask names) or log file name, or a path under a
    file as --output-path: one line and exit 2 before the model is loaded or a scan read (a model
    that cannot be loaded gets the same line), nothing written."""
    data = _phantom_data(tmp_path / "data", 2)
    folder = tmp_path / "rows"
    folder.mkdir()
    model = tmp_path / "model.ts"
    model.write_bytes(tiny_export.torchscript.read_bytes())
    broken = tmp_path / "broken.ts"
    broken.write_bytes(b"")
    manifest = data / "manifest.csv"
    contents = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    image = sorted((data / "images").iterdir())[0]
    cases = [
        (model, data / "images", f"{tmp_path / 'new'}/",
         f"--output-path {tmp_path / 'new'}/: is a folder; expected a CSV file name such as "
         f"{tmp_path / 'new' / 'predictions.csv'}"),
        (model, data / "images", image,
         f"--output-path {image}: names an image file; expected a CSV file name such as "
         "rows.csv (its log is rows.log)"),
        (model, manifest, tmp_path / "rows.log",
         f"--output-path {tmp_path / 'rows.log'}: names a log file; expected a CSV file name "
         "such as rows.csv (its log is rows.log)"),
        (model, data / "images", folder,
         f"--output-path {folder}: is a folder; expected a CSV file name such as "
         f"{folder / 'predictions.csv'}"),
        (broken, data / "images", folder,
         f"--output-path {folder}: is a folder; expected a CSV file name such as "
         f"{folder / 'predictions.csv'}"),
        (model, data / "images", model,
         f"--output-path {model}: would overwrite the --model-path {model}; expected a new "
         "CSV file name such as predictions.csv"),
        (model, manifest, manifest,
         f"--output-path {manifest}: would overwrite the INPUT {manifest}; expected a new "
         "CSV file name such as predictions.csv"),
        (model, data / "images", model / "rows.csv",
         f"--output-path {model / 'rows.csv'}: its folder {model} cannot be made (File exists); "
         "expected a folder you can write"),
    ]
    for model_path, source, output, message in cases:
        done = run_cli(["calcinet-predict", "--model-path", str(model_path), str(source),
                        "--output-path", str(output)], cwd=tmp_path, timeout=300)
        assert done.returncode == 2, done.stderr
        assert (done.stdout, done.stderr) == ("", f"calcinet: error: {message}\n")
        # No log beside the output, no rows, every file as it was.
        assert {path: path.read_bytes() for path in tmp_path.rglob("*")
                if path.is_file()} == contents


@pytest.mark.parametrize("workers", ["0", "2"])  # read in the main thread / in threads
def test_sigterm_keeps_the_rows_written_so_far(tiny_export: ExportResult, tmp_path: Path,
                                               workers: str) -> None:
    # Rows reach the CSV as they are predicted; a SIGTERM midway leaves them there, in input
    # order, says so in one line (also in the log) and exits 143.
    data = _phantom_data(tmp_path / "data", 1)
    (image,) = (data / "images").glob("*.nii.gz")
    many = tmp_path / "many"
    many.mkdir()
    for index in range(1500):  # one file under many names: every name is its own input
        (many / f"p{index:04d}.nii.gz").symlink_to(image)
    out = tmp_path / "rows.csv"
    process = popen_cli(
        ["calcinet-predict", "--model-path", str(tiny_export.torchscript), str(many),
         "--output-path", str(out), "--batch-size", "1", "--num-workers", workers, "--quiet"],
        tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if out.is_file() and out.read_text().count("\n") >= 3:  # the header and two rows
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    text = out.read_text()
    assert text.endswith("\n")  # whole lines only
    rows = list(csv.DictReader(text.splitlines()))
    assert 2 <= len(rows) < 1500
    assert [r["path"] for r in rows] == [str(many / f"p{i:04d}.nii.gz") for i in range(len(rows))]
    assert len({r["probability"] for r in rows}) == 1  # the same voxels under every name
    (line,) = stderr.splitlines()
    said = int(line.split(" after ")[1].split(" of ")[0])
    assert said in (len(rows), len(rows) - 1)  # a stop between writing and counting a row
    assert line == (f"calcinet: warning: stopped by SIGTERM after {said} of 1500 input(s); "
                    f"{out} holds its {said} prediction(s), in input order")
    assert line.removeprefix("calcinet: warning: ") in out.with_suffix(".log").read_text()


def test_a_closed_stdout_does_not_stop_a_run_that_writes_files(
    tiny_export: ExportResult, tmp_path: Path
) -> None:
    # `calcinet-predict ... --output-path rows.csv | head -1`: the rows and the log are files,
    # the terminal only echoes the messages; its reader leaving stops nothing.
    data = _phantom_data(tmp_path / "data", 3)
    out = tmp_path / "rows.csv"
    process = popen_cli(
        ["calcinet-predict", "--model-path", str(tiny_export.torchscript), str(data / "images"),
         "--output-path", str(out)],
        tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before the first message
    stderr = process.stderr.read()
    assert process.wait(timeout=300) == 0, stderr
    assert stderr == ""
    with out.open() as handle:
        assert len(list(csv.DictReader(handle))) == 3
    assert f"Wrote 3 prediction(s) to {out}" in out.with_suffix(".log").read_text()


def test_a_centre_with_only_manifests_is_refused(tiny_export: ExportResult,
                                                 tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("path\na.nii.gz\n")
    done = run_cli(["calcinet-predict", "--model-path", str(tiny_export.torchscript), "m.csv",
                    "--center", "1,2,3"], cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("calcinet: error: --center 1,2,3: applies to scans given directly; a "
                           "manifest gives each row's centre in its center_x,center_y,center_z "
                           "columns\n")


def test_a_run_that_predicts_nothing_leaves_an_earlier_csv_as_it_was(
    tiny_export: ExportResult, tmp_path: Path
) -> None:
    data = _phantom_data(tmp_path / "data", 2)
    model = tiny_export.torchscript
    rows = tmp_path / "rows.csv"
    first = run_cli(["calcinet-predict", "--model-path", str(model), str(data / "images"),
                     "--output-path", str(rows)], cwd=tmp_path, timeout=300)
    assert first.returncode == 0, first.stderr
    earlier = rows.read_bytes()
    assert len(earlier.decode().splitlines()) == 3  # the header and two rows
    (tmp_path / "notes.nii.gz").write_text("not an image\n")
    (tmp_path / "empty.nii").write_bytes(b"")
    for output, said in ((rows, f"no prediction made: {rows} left as it was (an earlier run's "
                                "rows)"),
                         (tmp_path / "new.csv", f"no prediction made: {tmp_path / 'new.csv'} "
                                                "not written")):
        done = run_cli(["calcinet-predict", "--model-path", str(model), "notes.nii.gz",
                        "empty.nii", "--output-path", str(output)], cwd=tmp_path, timeout=300)
        assert done.returncode == 1
        assert f"calcinet: warning: {said}\n" in done.stderr
        assert said in output.with_suffix(".log").read_text()
    assert rows.read_bytes() == earlier and not (tmp_path / "new.csv").exists()
    # The log beside rows.csv still holds the run that wrote its rows, then the failed rerun,
    # each headed by its command line.
    runs = rows.with_suffix(".log").read_text().split("[INFO] - $ calcinet-predict ")
    assert len(runs) == 3 and f"Wrote 2 prediction(s) to {rows}" in runs[1]
    assert runs[2].startswith(f"--model-path {model} notes.nii.gz empty.nii --output-path {rows}")
