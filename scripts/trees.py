"""``--tree NAME=SRC``: the other source trees a benchmark times beside this one (shared by
``bench_predict.py`` and ``bench_startup.py``, which run each tree's calcinet in fresh processes
with ``PYTHONPATH=SRC``)."""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def add_tree_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=SRC",
                        help="another source tree to time beside this one")


def source_trees(args: argparse.Namespace) -> dict[str, Path]:
    """``{"this tree": <repo>/src, NAME: SRC, ...}`` in the order given."""
    trees = {"this tree": REPO / "src"}
    for item in args.tree:
        name, _, path = item.partition("=")
        trees[name] = Path(path).resolve()
    return trees
