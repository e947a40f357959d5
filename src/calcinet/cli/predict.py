"""``calcinet-predict --model model.ts INPUT...``: malignancy probabilities from an exported model.

Needs only torch and the image readers (no Lightning, Hydra or MLflow). Exit status: 0 when every
input was predicted, 1 when some failed (one line each on stderr), 2 for a bad command line or a
model that cannot be loaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from calcinet.cli import fail
from calcinet.runtime import tune_malloc

EPILOG = """\
INPUT kinds:
  *.nii, *.nii.gz, *.nrrd, *.nhdr   a CT volume in HU with its world geometry (an NRRD
                                    without 'space' is read as LPS, with a warning)
  *.npy                             HU in (x, y, z) axis order, RAS, voxel size --spacing
  a DICOM series folder, DICOMDIR   slices stacked by position; HU = stored value *
  or Enhanced CT file               RescaleSlope + RescaleIntercept
  a folder                          every such file and DICOM series inside it
  *.csv                             a manifest, read as training reads it: column path
                                    (relative to the CSV's folder), optional center_x,
                                    center_y,center_z,coord_space or mask, spacing_x/y/z
Each volume is oriented to RAS and resampled to the model's spacing; the patch is cut around
--center (rounded to the nearest voxel), around each connected component of --mask, or from
the middle of the volume, and padded with air (-1000 HU, or the model's window low end if
lower) where it leaves the scan: the same code as training and calcinet-evaluate.
Coordinates are x,y,z: 'world' is RAS millimetres (NIfTI / nibabel / 3D Slicer convention),
'lps' is DICOM patient millimetres, 'voxel' is the file's own voxel index (i,j,k).
The 'warning' column says when an input does not look like CT in HU, or lies far from the
intensities of the model's training patches; the row is written all the same.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calcinet-predict",
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
        "--model",
        required=True,
        type=Path,
        help="exported model (.ts TorchScript or .pt2 torch.export)",
    )
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
        help="space of --center (default: world = RAS mm) and of manifest rows without a "
        "coord_space value",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="CSV",
        help="write path,[component,centre,]probability,prediction,label,warning here "
        "instead of printing",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="patches per forward pass")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        metavar="N",
        help="threads that read and cut the next scans while the model runs (default 2; 0: "
        "read between forward passes)",
    )
    parser.add_argument(
        "--threshold",
        default="operating",
        metavar="T",
        help="'operating' (chosen on validation; default), 'sensitivity' (the "
        "target-sensitivity threshold) or a number in [0, 1]",
    )
    parser.add_argument(
        "--spacing",
        default="1,1,1",
        metavar="SX,SY,SZ",
        help="voxel size in mm of .npy inputs (x,y,z order; default 1,1,1)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument(
        "--no-optimize",
        action="store_true",
        help="run the TorchScript model as saved, without torch.jit.optimize_for_inference",
    )
    parser.add_argument(
        "--show-metadata", action="store_true", help="print the model's metadata.json and exit"
    )
    return parser


def joined_values(argv: list[str], options: tuple[str, ...] = ("--center", "--spacing")
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


def main(argv: list[str] | None = None) -> int:
    tune_malloc()
    args = build_parser().parse_args(joined_values(sys.argv[1:] if argv is None else argv))
    # Imported here so that --help answers at once; torch takes seconds to import.
    from calcinet.inference import expand_inputs, load_model, predict
    from calcinet.inference.inputs import Failure, parse_center
    from calcinet.inference.metadata import dumps
    from calcinet.inference.model import ModelLoadError
    from calcinet.inference.predict import print_table, resolve_threshold, write_csv

    if args.batch_size < 1:
        fail(f"--batch-size={args.batch_size}: expected a positive integer")
    if args.workers < 0:
        fail(f"--workers={args.workers}: expected an integer >= 0")
    try:
        center = parse_center(args.center) if args.center else None
        spacing = parse_center(args.spacing, "--spacing")
        if min(spacing) <= 0:
            raise ValueError(f"--spacing={args.spacing!r}: expected three positive numbers (mm)")
    except ValueError as error:
        fail(error)
    if args.mask is not None:
        scan = Path(args.inputs[0]) if len(args.inputs) == 1 else None
        from calcinet.inference.inputs import is_series

        if args.center or scan is None or scan.suffix.lower() == ".csv" or (
                scan.is_dir() and not is_series(scan)):
            fail(f"--mask {args.mask}: expected exactly one scan INPUT (a file or a DICOM "
                 "series) and no --center; a manifest gives masks in its mask column")
    if args.out is not None and not args.out.parent.is_dir():
        fail(f"--out {args.out}: folder {args.out.parent} does not exist")
    try:
        model = load_model(args.model, args.device, optimize=not args.no_optimize)
        threshold = resolve_threshold(model, args.threshold)
    except (ModelLoadError, ValueError, RuntimeError) as error:
        fail(error)
    if args.show_metadata:
        print(dumps(model.info.raw))
        return 0
    if not args.inputs:
        fail("no INPUT given; expected volume files, DICOM folders, folders or a manifest .csv")

    requests, failures = expand_inputs(args.inputs, center, args.coord_space, args.mask)
    for failure in failures:
        print(f"calcinet: error: {failure.path}: {failure.reason}", file=sys.stderr)
    rows = []
    for item in predict(model, requests, args.batch_size, threshold, spacing,
                        args.workers):
        if isinstance(item, Failure):
            failures.append(item)
            print(f"calcinet: error: {item.path}: {item.reason}", file=sys.stderr, flush=True)
        else:
            rows.append(item)
    if args.out is not None:
        try:
            write_csv(rows, args.out)
        except OSError as error:
            fail(f"--out {args.out}: cannot be written ({error.strerror or error})")
        print(f"Wrote {len(rows)} prediction(s) to {args.out}")
    elif rows:
        print_table(rows)
    if failures:
        print(
            f"calcinet: {len(failures)} of {len(rows) + len(failures)} input(s) failed",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
