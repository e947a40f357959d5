"""Benchmark the synthetic phantom on ONE core: patches/s overall and per pattern.

    python scripts/bench_phantom.py                      # default config, 48^3 @ 1.25 mm
    python scripts/bench_phantom.py --n 400 --repeats 5 --patch-size 32 32 32 --spacing 1.5 1.5 1.5

Prints a Markdown table (the README quotes it). Thread pools are pinned to one thread before numpy
loads and, on Linux, the process is pinned to one CPU, so the figure is a per-core rate.
"""

from __future__ import annotations

import os

for _var in (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from calcinet.data.phantom import PATTERNS, PhantomConfig, render, sample_params  # noqa: E402
from calcinet.data.phantom.shapes import FIELD_LEVELS_MM, _bank  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="mixed samples per repeat")
    ap.add_argument("--per-pattern", type=int, default=20, help="samples per pattern per repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--patch-size", type=int, nargs=3, default=None)
    ap.add_argument("--spacing", type=float, nargs=3, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    kw = {}
    if args.patch_size:
        kw["patch_size"] = tuple(args.patch_size)
    if args.spacing:
        kw["spacing"] = tuple(args.spacing)
    config = PhantomConfig(**kw)

    # One-off cost per process and geometry: the random-field banks.
    t0 = time.perf_counter()
    for level in FIELD_LEVELS_MM:
        _bank(config.patch_size, config.spacing, level)
    warmup = time.perf_counter() - t0

    def rate(params_list):
        t = time.perf_counter()
        for p in params_list:
            render(p, config)
        return len(params_list) / (time.perf_counter() - t)

    mixed = [sample_params(i, args.seed, config) for i in range(args.n)]
    t = time.perf_counter()
    for i in range(args.n):
        sample_params(i, args.seed, config)
    params_us = (time.perf_counter() - t) / max(args.n, 1) * 1e6
    mixed_rates = [rate(mixed) for _ in range(args.repeats)]

    per = {}
    for pid in PATTERNS:
        plist = [sample_params(i, args.seed, config, pattern=pid) for i in range(args.per_pattern)]
        per[pid] = statistics.median(rate(plist) for _ in range(args.repeats))

    size = "x".join(str(n) for n in config.patch_size)
    sp = "x".join(f"{s:g}" for s in config.spacing)
    med = statistics.median(mixed_rates)
    print(
        f"## Phantom generation speed, one core ({platform.processor() or platform.machine()}, "
        f"numpy {np.__version__})\n"
    )
    print(
        f"Patch {size} voxels at {sp} mm, default nuisance ranges; median of {args.repeats} "
        f"repeats of {args.n} mixed samples (render only; `sample_params` adds "
        f"{params_us:.0f} us/sample). One-off warm-up per process: {warmup:.2f} s.\n"
    )
    print("| pattern | class | patches/s | ms/patch |")
    print("|---|---|---:|---:|")
    print(f"| **all (default mix)** | | **{med:.0f}** | **{1e3 / med:.1f}** |")
    for pid, r in per.items():
        cls = "malignant" if PATTERNS[pid].label else "benign"
        print(f"| {pid} | {cls} | {r:.0f} | {1e3 / r:.1f} |")


if __name__ == "__main__":
    main()
