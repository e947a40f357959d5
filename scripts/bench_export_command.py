"""Benchmark the whole ``calcinet-export`` command: wall time and where it goes.

    python scripts/bench_export_command.py CKPT                             # this source tree
    python scripts/bench_export_command.py CKPT --tree before=/tmp/old/src  # and another one

Each round runs ``calcinet-export ckpt_path=CKPT`` as a user does (a fresh process: start-up,
loading, TorchScript, torch.export, the parity check in a torch-only process, the MLflow model),
once per ``--tree`` (``name=path`` of a ``src`` folder holding ``calcinet``), trees interleaved
round by round. Each tree writes into its own temporary folder and SQLite MLflow store, which an
untimed first export creates (as a user's store exists before their export). The
table gives the median wall time per tree and the median of each step of the command's own
``Time:`` line. Export time depends on the network, not on its weights: any checkpoint of the
default recipe (``calcinet-train debug=smoke`` writes one in seconds) measures the default model.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trees import add_tree_option, source_trees

STEP = re.compile(r"([A-Za-z.\- ]+?) ([0-9.]+) s")


def export(tree: Path, checkpoint: Path, folder: Path) -> tuple[float, dict[str, float]]:
    """Wall seconds of one ``calcinet-export`` importing calcinet from ``tree``, and the steps
    of its ``Time:`` line."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-m", "calcinet.cli.export", f"ckpt_path={checkpoint}",
               f"output_path={folder / 'model.ts'}",
               f"mlflow.tracking_uri=sqlite:///{folder / 'mlflow.db'}",
               f"hydra.run.dir={folder / 'run'}"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=folder)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{tree}: calcinet-export failed:\n{done.stderr[-2000:]}")
    line = next((line for line in (done.stdout + done.stderr).splitlines()
                 if line.startswith("Time:")), "")
    steps = {name.strip(" ,"): float(value)
             for name, value in STEP.findall(line.removeprefix("Time:"))}
    return seconds, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a .ckpt written by calcinet-train")
    add_tree_option(parser)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trees = source_trees(args)
    walls: dict[str, list[float]] = {name: [] for name in trees}
    steps: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    checkpoint = args.checkpoint.resolve()
    with tempfile.TemporaryDirectory(prefix="calcinet-bench-export-") as tmp:
        folders = {name: Path(tmp) / f"tree{i}" for i, name in enumerate(trees)}
        for name, folder in folders.items():
            folder.mkdir()
            export(trees[name], checkpoint, folder)  # the store and byte-code, untimed
        for index in range(args.rounds):
            names = list(trees)
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                seconds, line = export(trees[name], checkpoint, folders[name])
                walls[name].append(seconds)
                for step, value in line.items():
                    steps[name].setdefault(step, []).append(value)
    print(f"calcinet-export of {args.checkpoint}, {args.rounds} rounds interleaved, medians "
          f"(s)\n")
    names = sorted({step for line in steps.values() for step in line},
                   key=lambda s: min(list(line).index(s) for line in steps.values()
                                     if s in line))
    print("| code | wall | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for name in trees:
        cells = [f"{statistics.median(steps[name][s]):.1f}" if s in steps[name] else "-"
                 for s in names]
        print(f"| {name} | {statistics.median(walls[name]):.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
