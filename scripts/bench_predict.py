"""Benchmark ``calcinet-predict`` end to end: a folder of NIfTI patches, and a real DICOM series.

    python scripts/bench_predict.py                                # this source tree
    python scripts/bench_predict.py --tree before=/tmp/old/src     # and another one, interleaved

The command is run as a user runs it (a fresh process: start-up, model loading, reading,
resampling, batching, writing the CSV), with the default compact CNN (random weights: speed does
not depend on training) exported as TorchScript at the default 48^3 / 1.25 mm. Inputs:

- ``--patches`` NIfTI phantom patches of 64^3 at 1 mm (resampled to the model's grid);
- the 28-slice axial series of ``../shared/fixtures/real/dicom/axial_series`` (512 x 512, 5 mm),
  one finding cut from it.

Each ``--tree`` (``name=path`` of a ``src`` folder holding ``calcinet``) runs the same commands,
interleaved round by round, so that a shared machine's drift hits every tree alike; the table
gives the median wall time over ``--rounds`` and files (or slices) per second. One patch alone
measures the start-up (imports, model loading); the patches' steady rate is
``(N - 1) / (time of N - time of 1)``, printed beside the model's own rate on batches of 16
already in memory (TorchScript + ``optimize_for_inference``, as predict runs it).
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


def write_model(path: Path) -> Path:
    """The default compact CNN with random weights, as calcinet-export lays it out."""
    import torch
    from omegaconf import OmegaConf

    from calcinet.config import compose
    from calcinet.export.checkpoint import CheckpointInfo
    from calcinet.export.metadata import build_metadata
    from calcinet.export.torchscript import save_torchscript
    from calcinet.export.wrapper import HUClassifier
    from calcinet.models.networks import build_network

    defaults = compose("train")
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


def model_rate(model: Path, rounds: int = 10) -> float:
    """Patches/s of the exported model alone on batches of 16 HU patches already in memory."""
    import torch

    from calcinet.inference import load_model
    from calcinet.runtime import tune_malloc

    tune_malloc()
    loaded = load_model(model)
    batch = torch.full((16, 1, *loaded.info.patch_size), -50.0)
    loaded(batch), loaded(batch)  # TorchScript's profiling runs
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        loaded(batch)
        times.append(time.perf_counter() - start)
    return 16 / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_tree_option(parser)
    parser.add_argument("--patches", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trees = source_trees(args)
    with tempfile.TemporaryDirectory(prefix="calcinet-bench-predict-") as tmp:
        folder = Path(tmp)
        model = write_model(folder / "model.ts")
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
        for index in range(args.rounds):
            names = list(trees)
            shift = index % len(names)
            for job, (command, _) in jobs.items():
                for name in names[shift:] + names[:shift]:
                    times.setdefault((job, name), []).append(run(trees[name], command, folder))
        alone = model_rate(model)
    print(f"calcinet-predict, {args.rounds} rounds interleaved, median wall time "
          f"(start-up included)\n")
    print("| input | code | median s | files/s |")
    print("|---|---|---|---|")
    medians = {key: statistics.median(seconds) for key, seconds in times.items()}
    for (job, name), median in medians.items():
        print(f"| {job} | {name} | {median:.1f} | {jobs[job][1] / median:.1f} |")
    print(f"\nThe model alone: {alone:.1f} patches/s (batches of 16 in memory, this tree).")
    start_up, many = "1 NIfTI patch 64^3 (start-up)", f"{args.patches} NIfTI patches 64^3"
    for name in trees:
        steady = (args.patches - 1) / (medians[(many, name)] - medians[(start_up, name)])
        print(f"{name}: {steady:.1f} patches/s after start-up, {steady / alone:.2f} of the "
              "model's own rate")


if __name__ == "__main__":
    main()
