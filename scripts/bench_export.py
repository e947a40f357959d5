"""Benchmark the exported formats on the CPU: eager vs TorchScript vs torch.export.

    python scripts/bench_export.py                    # compact CNN, 48^3, batches 1 and 32
    python scripts/bench_export.py --patch-size 32 --batches 1 8 --rounds 20
    python scripts/bench_export.py model.network.first_stage_convs=2  # Hydra overrides: the network

Every variant is the same HU model (window + network + sigmoid) with random weights (speed does
not depend on training): eager PyTorch; the TorchScript file as saved and reloaded; the same file
after ``torch.jit.optimize_for_inference`` (what ``calcinet-predict`` runs on a CPU); the
``torch.export`` program reloaded. The process applies calcinet's allocator settings
(:mod:`calcinet.runtime`) as ``calcinet-predict`` does; ``CALCINET_MALLOC_TUNING=0`` measures
glibc's defaults instead.

Shared machines drift by tens of percent within a minute, so the variants are timed *interleaved*:
each round calls every variant once, in a rotating order, and each variant's time is divided by
eager's time in the same round. The table gives the median latency, patches/s, and the median of
those paired ratios with their interquartile range: a ratio whose range straddles 1.00 is a tie.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import OmegaConf

from calcinet.config import compose
from calcinet.export.torch_export import export_program, save_program
from calcinet.export.torchscript import save_torchscript, to_torchscript
from calcinet.export.wrapper import HUClassifier
from calcinet.inference.model import quiet_torchscript
from calcinet.models.networks import build_network
from calcinet.runtime import tune_malloc


def recipe(overrides: list[str]) -> tuple[dict, tuple[float, float]]:
    """The network and HU window of the train config with ``overrides`` (no second copy)."""
    cfg = compose("train", overrides)
    return OmegaConf.to_container(cfg.model.network, resolve=True), tuple(cfg.data.hu_window)


def time_rounds(
    variants: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    hu: torch.Tensor,
    warmup: int,
    rounds: int,
) -> dict[str, list[float]]:
    """Seconds per call of every variant, ``rounds`` interleaved rounds after ``warmup`` calls each
    (TorchScript profiles and optimises during its first calls)."""
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    with torch.inference_mode():
        for name in names:
            for _ in range(warmup):
                variants[name](hu)
        for index in range(rounds):
            shift = index % len(names)  # rotate who goes first: no variant always follows another
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                variants[name](hu)
                times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(times: list[float], reference: list[float]) -> tuple[float, float, float]:
    """(median, lower quartile, upper quartile) of the round-by-round ratios."""
    ratios = [t / r for t, r in zip(times, reference, strict=True)]
    lower, _, upper = statistics.quantiles(ratios, n=4)
    return statistics.median(ratios), lower, upper


def build_variants(
    network_kwargs: dict, hu_window: tuple[float, float], size: int, folder: Path
) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    network = build_network(**network_kwargs)
    eager = HUClassifier(network, hu_window, (size,) * 3).eval()
    example = torch.full((2, 1, size, size, size), -1000.0)
    scripted, _ = to_torchscript(eager, example)
    save_torchscript(scripted, folder / "model.ts", None)
    save_program(export_program(eager, example), folder / "model.pt2", None)
    with quiet_torchscript():
        loaded = torch.jit.load(str(folder / "model.ts"), map_location="cpu").eval()
        optimized = torch.jit.optimize_for_inference(
            torch.jit.load(str(folder / "model.ts"), map_location="cpu").eval()
        )
    program = torch.export.load(folder / "model.pt2").module()
    return {
        "eager": eager,
        "TorchScript": loaded,
        "TorchScript + optimize_for_inference": optimized,
        "torch.export (.pt2)": program,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch-size", type=int, default=48, help="cube side in voxels")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument(
        "--rounds", type=int, default=60, help="interleaved rounds at batch 1 (fewer for batches)"
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the train config")
    args = parser.parse_args()
    network_kwargs, hu_window = recipe(args.overrides)
    tuned = tune_malloc()  # as calcinet-predict does; CALCINET_MALLOC_TUNING=0 to compare
    torch.manual_seed(0)
    size = args.patch_size
    with tempfile.TemporaryDirectory() as folder:
        variants = build_variants(network_kwargs, hu_window, size, Path(folder))
        results: dict[int, dict[str, list[float]]] = {}
        for batch in args.batches:
            hu = torch.rand(batch, 1, size, size, size) * 2400.0 - 1000.0
            rounds = max(8, args.rounds if batch == 1 else args.rounds // 3)
            results[batch] = time_rounds(variants, hu, args.warmup, rounds)
    print(
        f"{network_kwargs}, {size}^3 HU patches, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, "
        f"malloc tuning {'on' if tuned else 'off'}"
    )
    print()
    print("| format | batch | rounds | median latency (ms) | patches/s | latency / eager (IQR) |")
    print("|---|---|---|---|---|---|")
    for batch, times in results.items():
        for name in variants:
            seconds = statistics.median(times[name])
            ratio, lower, upper = paired_ratio(times[name], times["eager"])
            print(
                f"| {name} | {batch} | {len(times[name])} | {seconds * 1e3:.1f} | "
                f"{batch / seconds:.1f} | {ratio:.2f} ({lower:.2f}-{upper:.2f}) |"
            )


if __name__ == "__main__":
    main()
