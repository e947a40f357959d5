"""Benchmark ``calcinet-predict`` end to end: a folder of NIfTI patches, and a real DICOM series.

    python scripts/bench_predict.py                                # this source tree
    python scripts/bench_predict.py --tree before=/tmp/old/src     # and another one, interleaved
    python scripts/bench_predict.py model.network.first_stage_convs=2  # Hydra overrides

The command is run as a user runs it (a fresh process: start-up, model loading, reading,
resampling, batching, writing the CSV), with the train config's network (the default compact CNN
unless Hydra overrides are given; random weights: speed does not depend on training) exported as
TorchScript at the default 48^3 / 1.25 mm. Inputs:

- ``--patches`` NIfTI phantom patches of 64^3 at 1 mm (resampled to the model's grid);
- the 28-slice axial series of ``../shared/fixtures/real/dicom/axial_series`` (512 x 512, 5 mm),
  one finding cut from it.

Each ``--tree`` (``name=path`` of a ``src`` folder holding ``calcinet``) runs the same commands,
interleaved round by round, so that a shared machine's drift hits every tree alike; the table
gives the median wall time over ``--rounds`` and files (or slices) per second. One patch alone
measures the start-up (imports, model loading); the patches' steady rate is
``(N - 1) / (time of N - time of 1)``. Each round also measures, in fresh processes, the model's
own rate on batches of 16 already in memory (TorchScript + ``optimize_for_inference``, as predict
runs it; this tree) and each tree's CPU time to read one patch file and cut its patch in one
thread (what the reading threads share the cores with the model for); the ratio of the steady
rate to the model's rate is the median of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trees import add_tree_option, source_trees

REPO = Path(__file__).resolve().parents[1]
AXIAL = REPO.parent / "shared" / "fixtures" / "real" / "dicom" / "axial_series"


def write_model(path: Path, overrides: list[str]) -> Path:
    """The train config's network (with Hydra ``overrides``) with random weights, as
    calcinet-export lays it out."""
    import torch
    from omegaconf import OmegaConf

    from calcinet.config import compose
    from calcinet.export.checkpoint import CheckpointInfo
    from calcinet.export.metadata import build_metadata
    from calcinet.export.torchscript import save_torchscript
    from calcinet.export.wrapper import HUClassifier
    from calcinet.models.networks import build_network

    defaults = compose("train", overrides)
    network = OmegaConf.to_container(defaults.model.network, resolve=True)
    patch, spacing = list(defaults.data.patch_size), list(defaults.data.spacing)
    window = list(defaults.data.hu_window)
    torch.manual_seed(0)
    model = torch.jit.script(HUClassifier(build_network(**network), window, patch).eval())
    stand_in = path.with_suffix(".ckpt")
    stand_in.write_bytes(b"random weights")
    info = CheckpointInfo(path=stand_in, network=network, patch_size=patch, spacing=spacing,
                          hu_window=window, class_names=["benign", "malignant"],
                          operating_point="youden", target_sensitivity=0.95, run={})
    save_torchscript(model, path, build_metadata(info, (0.5, 0.5), "script"))
    return path


def write_patches(folder: Path, count: int) -> Path:
    from calcinet.data.phantom.materialize import write_dataset
    from calcinet.data.sources import phantom_config

    write_dataset(folder, count, 0, phantom_config((64, 64, 64), (1.0, 1.0, 1.0)))
    return folder / "images"


def run(tree: Path, args: list[str], folder: Path) -> float:
    """Wall seconds of ``calcinet-predict ARGS`` importing calcinet from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "calcinet.cli.predict", *args], cwd=folder,
                          env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{tree}: calcinet-predict {' '.join(args)} failed:\n{done.stderr}")
    return seconds


MODEL_RATE = """
import statistics, sys, time
import torch
from calcinet.inference import load_model
from calcinet.runtime import tune_malloc
tune_malloc()
model = load_model(sys.argv[1])
batch = torch.full((16, 1, *model.info.patch_size), -50.0)
model(batch), model(batch)  # TorchScript's profiling runs
times = []
for _ in range(10):
    start = time.perf_counter()
    model(batch)
    times.append(time.perf_counter() - start)
print(16 / statistics.median(times))
"""

READ_COST = """
import sys, time
from pathlib import Path
import torch
from calcinet.imaging.rows import Location
from calcinet.inference import load_model
from calcinet.inference.predict import load_patches
from calcinet.runtime import tune_malloc
tune_malloc()
torch.set_num_threads(1)
model = load_model(sys.argv[1])
files = sorted(Path(sys.argv[2]).iterdir())[:100]
requests = [Location(path=f) for f in files]
for _ in load_patches(requests[:5], model, (1.0, 1.0, 1.0), workers=0):
    pass
start = time.process_time()
for _ in load_patches(requests, model, (1.0, 1.0, 1.0), workers=0):
    pass
print((time.process_time() - start) / len(requests) * 1000)
"""


def python(tree: Path, code: str, *args: str) -> float:
    """The number a snippet prints, run in a fresh process importing calcinet from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: benchmark snippet failed:\n{done.stderr}")
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_tree_option(parser)
    parser.add_argument("--patches", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the train config")
    args = parser.parse_args()
    trees = source_trees(args)
    with tempfile.TemporaryDirectory(prefix="calcinet-bench-predict-") as tmp:
        folder = Path(tmp)
        model = write_model(folder / "model.ts", args.overrides)
        patches = write_patches(folder / "patches", args.patches)
        single = next(iter(sorted(patches.iterdir())))
        jobs = {
            "1 NIfTI patch 64^3 (start-up)": (
                ["--model-path", str(model), str(single), "--output-path", "single.csv"], 1),
            f"{args.patches} NIfTI patches 64^3": (
                ["--model-path", str(model), str(patches), "--output-path", "patches.csv"],
                args.patches),
            "28-slice DICOM series, one finding": (
                ["--model-path", str(model), str(AXIAL), "--center", "0,40,760", "--coord-space",
                 "lps", "--output-path", "series.csv"], 28),
        }
        times: dict[tuple[str, str], list[float]] = {}
        alone: list[float] = []
        reading: dict[str, list[float]] = {name: [] for name in trees}
        for index in range(args.rounds):
            names = list(trees)
            shift = index % len(names)
            for job, (command, _) in jobs.items():
                for name in names[shift:] + names[:shift]:
                    times.setdefault((job, name), []).append(run(trees[name], command, folder))
            alone.append(python(trees["this tree"], MODEL_RATE, str(model)))
            for name in names[shift:] + names[:shift]:
                reading[name].append(python(trees[name], READ_COST, str(model), str(patches)))
    print(f"calcinet-predict, {args.rounds} rounds interleaved, median wall time "
          f"(start-up included)\n")
    print("| input | code | median s | files/s |")
    print("|---|---|---|---|")
    medians = {key: statistics.median(seconds) for key, seconds in times.items()}
    for (job, name), median in medians.items():
        print(f"| {job} | {name} | {median:.1f} | {jobs[job][1] / median:.1f} |")
    print(f"\nThe model alone: {statistics.median(alone):.1f} patches/s (batches of 16 in "
          f"memory, this tree; rounds {min(alone):.1f}-{max(alone):.1f}).")
    start_up, many = "1 NIfTI patch 64^3 (start-up)", f"{args.patches} NIfTI patches 64^3"
    for name in trees:
        steady = [(args.patches - 1) / (n - one) for n, one in
                  zip(times[(many, name)], times[(start_up, name)], strict=True)]
        ratios = [rate / own for rate, own in zip(steady, alone, strict=True)]
        print(f"{name}: {statistics.median(steady):.1f} patches/s after start-up, "
              f"{statistics.median(ratios):.2f} of the model's own rate (rounds "
              f"{min(ratios):.2f}-{max(ratios):.2f}); reading a file and cutting its patch: "
              f"{statistics.median(reading[name]):.1f} ms of one core")


if __name__ == "__main__":
    main()
