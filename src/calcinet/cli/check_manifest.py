"""``calcinet-check-manifest manifest.csv``: check a manifest without training.

Exits 0 when the manifest is clean, 1 when it has problems, 2 for options that cannot work. The
arguments are parsed here, before anything heavy is imported, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from calcinet.cli import EXIT_STATUSES, command, fail, parse_spacing
from calcinet.data.splits import PURPOSES


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calcinet-check-manifest", description="Check a calcinet manifest without training: "
        "every row, file and split, each problem with its CSV line, column and value.",
        epilog=EXIT_STATUSES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--for", dest="purpose", choices=sorted(PURPOSES), default="training",
                        help="training (default): train and val need both classes; evaluation: "
                        "any split may be empty (an external test set)")
    parser.add_argument("manifest", help="the CSV file (path,label[,patient_id,split,...])")
    parser.add_argument("--npy-spacing", nargs="+", default=["1,1,1"], metavar="X,Y,Z",
                        help="voxel size (mm) of .npy files whose rows have no spacing_x/y/z, "
                        "as in calcinet-predict (default 1,1,1; 'X Y Z' is read too)")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="seed of the patient-level split of a manifest without a split "
                        "column (data.split_seed; default 0)")
    parser.add_argument("--val-fraction", type=float, default=0.15,
                        help="share of the patients in val when the split is drawn (0.15)")
    parser.add_argument("--test-fraction", type=float, default=0.15,
                        help="share of the patients in test when the split is drawn (0.15)")
    parser.add_argument("--cache-dir", default=None,
                        help="keep image facts here so a second check reads no voxels")
    return parser


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), check the manifest; returns the exit status."""
    args = parser().parse_args(argv)
    try:
        spacing = parse_spacing(",".join(args.npy_spacing), "--npy-spacing")
    except ValueError as error:
        fail(error)
    if not Path(args.manifest).is_file():
        fail(f"{args.manifest}: no such file; expected a manifest CSV (path,label,...)")
    from calcinet.data.manifest import check_manifest

    return check_manifest(args.manifest, purpose=args.purpose, npy_spacing=list(spacing),
                          split_seed=args.split_seed, val_fraction=args.val_fraction,
                          test_fraction=args.test_fraction, cache_dir=args.cache_dir)


if __name__ == "__main__":
    sys.exit(main())
