"""Benchmark how fast every console script answers ``--help`` (and Hydra's tab completion).

    python scripts/bench_startup.py                              # this source tree
    python scripts/bench_startup.py --tree before=/tmp/old/src   # and another one, interleaved

Each command runs as a user starts it: a fresh interpreter that imports the entry point named in
the installed package metadata and calls it with ``--help`` (for the Hydra commands also
``-sc query=bash`` with a partial command line, what one TAB costs). The last row times
``import torch, monai, lightning, mlflow``: what every command paid at start when the training
stack was imported at module level. Medians over ``--rounds``, trees interleaved round by round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

from trees import add_tree_option, source_trees

HYDRA_COMMANDS = {"calcinet-train", "calcinet-cv", "calcinet-evaluate", "calcinet-export",
                  "calcinet-synth"}
STACK = "import torch, monai, lightning, mlflow"


def seconds(tree: Path, code: str, argv: list[str], env: dict[str, str] | None = None) -> float:
    """Wall seconds of ``python -c CODE ARGV`` importing calcinet from ``tree``."""
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True,
                          text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_tree_option(parser)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    trees = source_trees(args)
    call = ("import sys; from importlib import import_module; m, f = sys.argv[1].split(':'); "
            "sys.argv = sys.argv[2:]; getattr(import_module(m), f)()")
    jobs: dict[str, tuple[str, list[str], dict[str, str]]] = {}
    for ep in sorted(entry_points(group="console_scripts"), key=lambda ep: ep.name):
        if not ep.value.startswith("calcinet."):
            continue
        jobs[f"{ep.name} --help"] = (call, [ep.value, ep.name, "--help"], {})
        if ep.name in HYDRA_COMMANDS:
            line = f"{ep.name} trainer.max_"
            jobs[f"{ep.name} TAB"] = (call, [ep.value, ep.name, "-sc", "query=bash"],
                                      {"COMP_LINE": line, "COMP_POINT": str(len(line))})
    jobs[STACK] = (STACK, [], {})
    times: dict[tuple[str, str], list[float]] = {}
    for index in range(args.rounds):
        names = list(trees)
        shift = index % len(names)
        for job, (code, argv, env) in jobs.items():
            for name in names[shift:] + names[:shift]:
                times.setdefault((job, name), []).append(seconds(trees[name], code, argv, env))
    print(f"Start-up, {args.rounds} rounds interleaved, median wall time of a fresh process\n")
    print("| command | code | median s |")
    print("|---|---|---|")
    for (job, name), took in times.items():
        print(f"| `{job}` | {name} | {statistics.median(took):.2f} |")


if __name__ == "__main__":
    main()
