"""Benchmark the exported formats on the CPU: eager vs TorchScript vs torch.export.

    python scripts/bench_export.py                    # compact CNN, 48^3, batches 1 and 32
    python scripts/bench_export.py --patch-size 32 --batches 1 8 --repeats 20

Every variant is the same HU model (window + network + sigmoid) with random weights (speed does
not depend on training): eager PyTorch; the TorchScript file as saved and reloaded; the same file
after ``torch.jit.optimize_for_inference`` (what ``calcinet-predict`` runs on a CPU); the
``torch.export`` program reloaded. Prints a Markdown table of the median single-call latency and
patches/s over the repeats, and the TorchScript/eager latency ratio. Shared machines are noisy:
compare medians from one run, not across runs.
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

#: The default recipe's network and HU window, read from the configs (no second copy).
_DEFAULTS = compose("train")
COMPACT = OmegaConf.to_container(_DEFAULTS.model.network, resolve=True)
HU_WINDOW = tuple(_DEFAULTS.data.hu_window)


def time_calls(
    model: Callable[[torch.Tensor], torch.Tensor], hu: torch.Tensor, warmup: int, repeats: int
) -> float:
    """Median seconds per call after ``warmup`` calls (TorchScript profiles its first calls)."""
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(hu)
        for _ in range(repeats):
            start = time.perf_counter()
            model(hu)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def build_variants(size: int, folder: Path) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    network = build_network(**COMPACT)
    eager = HUClassifier(network, HU_WINDOW, (size,) * 3).eval()
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
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per cell (median)")
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    size = args.patch_size
    with tempfile.TemporaryDirectory() as folder:
        variants = build_variants(size, Path(folder))
        results: dict[tuple[str, int], float] = {}
        for batch in args.batches:
            hu = torch.rand(batch, 1, size, size, size) * 2400.0 - 1000.0
            for name, model in variants.items():
                repeats = max(3, args.repeats if batch == 1 else args.repeats // 3)
                results[name, batch] = time_calls(model, hu, args.warmup, repeats)
    print(
        f"compact CNN {COMPACT['channels']}, {size}^3 HU patches, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}"
    )
    print()
    print("| format | batch | median latency (ms) | patches/s | latency / eager |")
    print("|---|---|---|---|---|")
    for batch in args.batches:
        eager = results["eager", batch]
        for name in variants:
            seconds = results[name, batch]
            print(
                f"| {name} | {batch} | {seconds * 1e3:.1f} | {batch / seconds:.1f} | "
                f"{seconds / eager:.2f} |"
            )


if __name__ == "__main__":
    main()
