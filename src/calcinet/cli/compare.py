"""``calcinet-compare A B [C ...]``: side-by-side metrics of models evaluated on the same samples,
with paired DeLong tests of each against the first.

Each of A, B, ... is a ``predictions.csv`` of ``calcinet-evaluate``, its run folder, or the MLflow
run id of an evaluation run.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from calcinet.cli import (
    EXIT_STATUSES,
    command,
    deprecated_alias,
    fail,
    log,
    setup_tool_logging,
    warn,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calcinet-compare",
        description="Compare models evaluated on the same samples (rows matched by id): AUROC "
        "with DeLong 95 % CI, AP, sensitivity, specificity, and the paired DeLong "
        "p-value of each AUROC difference against the first model.",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="PREDICTIONS",
        help="predictions.csv, a calcinet-evaluate run folder, or an MLflow run "
        "id of an evaluation run (the first is the reference)",
    )
    parser.add_argument(
        "--names",
        nargs="+",
        metavar="NAME",
        help="names to show instead of the folder names / run names",
    )
    parser.add_argument(
        "--tta",
        action="store_true",
        help="compare the test-time-augmented probabilities (probability_tta)",
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store of the run ids (default: $MLFLOW_TRACKING_URI, else "
        "sqlite:///mlflow.db in the current folder)",
    )
    parser.add_argument(
        "--output-path",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the table to FILE (.csv, .json or .md)",
    )
    deprecated_alias(parser, "--output", "--output-path", type=Path)
    parser.add_argument("--quiet", action="store_true",
                        help="print the table only: no notes, warnings and errors still shown")
    return parser


@command
def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    setup_tool_logging(args.quiet)
    from calcinet.evaluation import EvaluationError
    from calcinet.evaluation.compare import compare_predictions, format_table, load_predictions

    try:
        if len(args.sources) < 2:
            raise EvaluationError(f"{len(args.sources)} input: expected two or more to compare")
        if args.names and len(args.names) != len(args.sources):
            raise EvaluationError(
                f"--names has {len(args.names)} names for "
                f"{len(args.sources)} inputs: expected one per input"
            )
        if args.output_path and args.output_path.suffix not in (".csv", ".json", ".md"):
            raise EvaluationError(
                f"--output-path {args.output_path}: expected a .csv, .json or .md file")
        named = [load_predictions(s, args.tracking_uri) for s in args.sources]
        names = list(args.names or [name for name, _ in named])
        for i, name in enumerate(names):  # keep rows apart when two folders share a name
            if names.count(name) > 1:
                names[i] = f"{name} [{i + 1}]"
        comparison = compare_predictions(
            [(name, table) for name, (_, table) in zip(names, named, strict=True)], tta=args.tta
        )
    except EvaluationError as error:
        fail(error)
    for warning in comparison.warnings:
        warn(warning)
    print(format_table(comparison))
    output = args.output_path
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        table = comparison.table
        if output.suffix == ".csv":
            table.to_csv(output, index=False)
        elif output.suffix == ".json":
            table.to_json(output, orient="records", indent=2)
        else:
            output.write_text(format_table(comparison, markdown=True) + "\n")
        log.info(f"Table: {output}")


if __name__ == "__main__":
    main()
