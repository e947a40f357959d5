"""``calcinet-predict --model-path model.ts INPUT...``: malignancy probabilities from an exported
model.

Needs only torch and the image readers (no Lightning, Hydra or MLflow). Exit status: 0 when every
input was predicted, 1 when some failed (one line each on stderr), 2 for a bad command line or a
model that cannot be loaded (see :data:`calcinet.cli.EXIT_STATUSES`). With ``--output-path
rows.csv`` the run's messages are also appended to ``rows.log`` beside it, after its command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from calcinet.cli import (
    EXIT_STATUSES,
    INTERRUPTED,
    TERMINATED,
    Terminated,
    command,
    deprecated_alias,
    fail,
    log,
    parse_spacing,
    setup_tool_logging,
)
from calcinet.runtime import tune_malloc

EPILOG = """\
INPUT kinds:
  *.nii, *.nii.gz, *.nrrd, *.nhdr   a CT volume in HU with its world geometry (an NRRD
                                    without 'space' is read as LPS, with a warning)
  *.npy                             HU in (x, y, z) axis order, RAS, voxel size --npy-spacing
  a DICOM series folder, DICOMDIR   slices stacked by position; HU = stored value *
  or Enhanced CT file               RescaleSlope + RescaleIntercept
  a folder                          every such file and DICOM series inside it
  *.csv                             a manifest, read as training reads it: column path
                                    (relative to the CSV's folder), optional center_x,
                                    center_y,center_z,coord_space or mask, spacing_x/y/z
Each volume is oriented to RAS and resampled to the model's spacing; the patch is cut with its
middle voxel on --center, around each connected component of --mask, or from the middle of
the volume, and padded with air (-1000 HU, or the model's window low end if
lower) where it leaves the scan: the same code as training and calcinet-evaluate.
Coordinates are x,y,z: 'world' is RAS millimetres (NIfTI / nibabel / 3D Slicer convention),
'lps' is DICOM patient millimetres, 'voxel' is the file's own voxel index (i,j,k).
Columns: [id,]path,[component,][center_x,center_y,center_z,coord_space,][label,]probability,
prediction,predicted_label,warning. 'label' is the truth (0 benign, 1 malignant), present when
manifest rows give one, as in calcinet-evaluate's predictions.csv; 'prediction' is the decision
(0/1, probability >= threshold) and 'predicted_label' its class name (benign/malignant).
The 'warning' column says when an input does not look like CT in HU, or lies far from the
intensities of the model's training patches; the row is written all the same.
With --output-path rows.csv the messages of the run are also appended to rows.log beside it,
after the run's command line.

""" + EXIT_STATUSES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calcinet-predict",
        usage="calcinet-predict --model-path MODEL [options] INPUT...",
        description="Malignancy probability of calcification patterns in CT volumes, from a "
        "model written by calcinet-export.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="volume file, DICOM series folder, folder, or manifest .csv",
    )
    parser.add_argument(
        "--model-path",
        type=Path,
        help="exported model (.ts TorchScript or .pt2 torch.export); required",
    )
    deprecated_alias(parser, "--model", "--model-path", type=Path)
    parser.add_argument(
        "--center",
        metavar="X,Y,Z",
        help="patch centre for every INPUT given directly (manifest rows bring "
        "their own); default: the middle of the volume",
    )
    parser.add_argument(
        "--mask",
        type=Path,
        metavar="MASK",
        help="label map on the grid of the INPUT scan: one prediction per connected component, "
        "centred on its centroid (the centre is written in world coordinates)",
    )
    parser.add_argument(
        "--coord-space",
        default=None,
        choices=("world", "voxel", "lps"),
        help="space of --center (world = RAS mm when not given) and, when given, of the manifest "
        "rows with a centre but no coord_space value (refused otherwise, as in training)",
    )
    parser.add_argument(
        "--output-path",  # text: a trailing slash (a folder meant) must stay visible
        metavar="CSV",
        help="write the rows as CSV here instead of printing a table (and the run's messages "
        "appended to <CSV stem>.log beside it; the folder is created); '-': CSV on stdout",
    )
    deprecated_alias(parser, "--out", "--output-path")
    parser.add_argument("--batch-size", type=int, default=16, help="patches per forward pass")
    parser.add_argument(
        "--num-workers",
        type=int,
        default=2,
        metavar="N",
        help="threads that read and cut the next scans while the model runs (default 2; 0: "
        "read between forward passes)",
    )
    deprecated_alias(parser, "--workers", "--num-workers", type=int)
    parser.add_argument(
        "--threshold",
        default="operating",
        metavar="T",
        help="'operating' (chosen on validation; default), 'sensitivity' (the "
        "target-sensitivity threshold) or a number in [0, 1]",
    )
    parser.add_argument(
        "--npy-spacing",
        default="1,1,1",
        metavar="X,Y,Z",
        help="voxel size in mm of .npy inputs (x,y,z order; default 1,1,1)",
    )
    deprecated_alias(parser, "--spacing", "--npy-spacing")
    parser.add_argument("--device", default="auto",
                        help="torch device: auto (default: the GPU when there is one), cpu, "
                        "cuda, cuda:1 ...")
    parser.add_argument(
        "--no-optimize",
        action="store_true",
        help="run the TorchScript model as saved, without torch.jit.optimize_for_inference",
    )
    parser.add_argument(
        "--show-metadata", action="store_true", help="print the model's metadata.json and exit"
    )
    parser.add_argument("--quiet", action="store_true",
                        help="only warnings and errors on the terminal, no progress bar")
    return parser


def joined_values(argv: list[str],
                  options: tuple[str, ...] = ("--center", "--npy-spacing", "--spacing")
                  ) -> list[str]:
    """``--center -21.9,-120.5,-611.5`` as ``--center=-21.9,...``: argparse would take a value
    that starts with ``-`` (a negative LPS or RAS coordinate) for an option."""
    out: list[str] = []
    index = 0
    while index < len(argv):
        if argv[index] in options and index + 1 < len(argv) and argv[index + 1].startswith("-"):
            out.append(f"{argv[index]}={argv[index + 1]}")
            index += 2
        else:
            out.append(argv[index])
            index += 1
    return out


def check_output_path(output: Path, model_path: Path, inputs: list[str], given: str) -> None:
    """Refuse a folder (``given`` is the option's text, trailing slash included), an image or
    log file name (so that no scan, mask or log a manifest or folder INPUT names can be
    overwritten), the model or an INPUT file as ``--output-path`` and make its folder, before
    the model is loaded or any scan is read."""
    from calcinet.imaging.geometry import image_format

    if output.is_dir() or given.endswith(("/", os.sep)):
        fail(f"--output-path {given}: is a folder; expected a CSV file name such as "
             f"{output / 'predictions.csv'}")
    kind = "a log" if output.suffix.lower() == ".log" else "an image" if image_format(output) \
        else None
    if kind:
        fail(f"--output-path {output}: names {kind} file; expected a CSV file name such as "
             "rows.csv (its log is rows.log)")
    if output.exists():
        for what, path in (("--model-path", model_path), *(("INPUT", Path(i)) for i in inputs)):
            if path.exists() and output.resolve() == path.resolve():
                fail(f"--output-path {output}: would overwrite the {what} {path}; expected a "
                     "new CSV file name such as predictions.csv")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"--output-path {output}: its folder {output.parent} cannot be made "
             f"({error.strerror or error}); expected a folder you can write")


@command
def main(argv: list[str] | None = None) -> int:
    tune_malloc()
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(joined_values(argv))
    given = args.output_path
    args.output_path = None if given is None else Path(given)
    if args.model_path is None:
        parser.error("the following arguments are required: --model-path")
    to_stdout = args.output_path is None or str(args.output_path) == "-"
    if not to_stdout:
        check_output_path(args.output_path, args.model_path, args.inputs, given)
    log_file = None if to_stdout else args.output_path.with_suffix(".log")
    # The rows own stdout when they are printed: the messages go to stderr then.
    setup_tool_logging(args.quiet, log_file, messages_to_stderr=to_stdout,
                       command=["calcinet-predict", *argv])
    # Imported here so that --help answers at once; torch takes seconds to import.
    from calcinet.inference import expand_inputs, load_model, predict
    from calcinet.inference.inputs import Failure, parse_center
    from calcinet.inference.metadata import dumps
    from calcinet.inference.model import ModelLoadError
    from calcinet.inference.predict import CsvRows, csv_columns, print_table, resolve_threshold

    if args.batch_size < 1:
        fail(f"--batch-size={args.batch_size}: expected a positive integer")
    if args.num_workers < 0:
        fail(f"--num-workers={args.num_workers}: expected an integer >= 0")
    try:
        center = parse_center(args.center) if args.center else None
        spacing = parse_spacing(args.npy_spacing, "--npy-spacing")
    except ValueError as error:
        fail(error)
    if center is not None and args.inputs and all(
            Path(i).suffix.lower() == ".csv" for i in args.inputs):
        fail(f"--center {args.center}: applies to scans given directly; a manifest gives each "
             "row's centre in its center_x,center_y,center_z columns")
    if args.mask is not None:
        scan = Path(args.inputs[0]) if len(args.inputs) == 1 else None
        from calcinet.inference.inputs import is_series

        if args.center or scan is None or scan.suffix.lower() == ".csv" or (
                scan.is_dir() and not is_series(scan)):
            fail(f"--mask {args.mask}: expected exactly one scan INPUT (a file or a DICOM "
                 "series) and no --center; a manifest gives masks in its mask column")
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        model = load_model(args.model_path, device, optimize=not args.no_optimize)
        threshold = resolve_threshold(model, args.threshold)
    except (ModelLoadError, ValueError, RuntimeError) as error:
        fail(error)
    if args.show_metadata:
        print(dumps(model.info.raw))
        return 0
    if not args.inputs:
        fail("no INPUT given; expected volume files, DICOM folders, folders or a manifest .csv")

    from calcinet.progress import bar

    requests, failures = expand_inputs(args.inputs, center, args.coord_space, args.mask)
    for failure in failures:
        log.error(f"{failure.path}: {failure.reason}")
    log.info(f"Predicting {len(requests)} finding(s) with {args.model_path} "
             f"(threshold {float(threshold)!r}: malignant at probability >= threshold)")
    rows = []
    done = 0  # findings predicted or failed so far
    # The CSV (a file, or stdout for '-') gets each row as it is predicted: a run stopped or
    # killed midway keeps what it made. The aligned table is printed at the end.
    target = args.output_path if not to_stdout else sys.stdout if given == "-" else None
    try:
        output = None if target is None else CsvRows(target, csv_columns(requests))
    except OSError as error:
        fail(f"--output-path {args.output_path}: cannot be written ({error.strerror or error})")
    try:
        # A mask gives its findings (connected components) only once its scan is read.
        with bar(total=None if args.mask else len(requests), desc="predict",
                 unit="finding") as shown:
            for item in predict(model, requests, args.batch_size, threshold, spacing,
                                args.num_workers):
                if isinstance(item, Failure):
                    failures.append(item)
                    shown.clear()
                    log.error(f"{item.path}: {item.reason}")
                else:  # written before it is counted: a stop in between under-counts
                    if output is not None:
                        try:
                            output.write(item)
                        except OSError as error:  # a full disk: the rows so far stay
                            fail(f"--output-path {args.output_path}: cannot be written "
                                 f"({error.strerror or error}) after {len(rows)} row(s)")
                    rows.append(item)
                done += 1
                shown.update()
    except (KeyboardInterrupt, Terminated) as stop:
        kept = (f"{len(rows)} prediction(s) written" if to_stdout else
                f"{args.output_path} holds its {len(rows)} prediction(s), in input order"
                if output is not None and output.written else _untouched(args.output_path))
        log.warning(f"stopped by {'Ctrl+C' if isinstance(stop, KeyboardInterrupt) else 'SIGTERM'}"
                    f" after {done} of {len(requests)} input(s); {kept}")
        if output is None and rows:
            print_table(rows)
        sys.exit(INTERRUPTED if isinstance(stop, KeyboardInterrupt) else TERMINATED)
    finally:
        if output is not None:
            output.close()
    if not to_stdout and rows:
        log.info(f"Wrote {len(rows)} prediction(s) to {args.output_path}")
    elif not to_stdout:
        log.warning(_untouched(args.output_path))
    elif output is None and rows:
        print_table(rows)
    if failures:
        log.warning(f"{len(failures)} of {len(rows) + len(failures)} input(s) failed")
        return 1
    return 0


def _untouched(path: Path) -> str:
    """What became of the output file of a run that predicted nothing."""
    if path.exists():
        return f"no prediction made: {path} left as it was (an earlier run's rows)"
    return f"no prediction made: {path} not written"


if __name__ == "__main__":
    sys.exit(main())
