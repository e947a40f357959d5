"""Speed/accuracy table of every network in the zoo, trained on the same data and budget on CPU.

    python scripts/bench_models.py [--networks compact,resnet10] [--budget-s 120] [--patch 48]

For each network: parameters, training samples/s (median over timed steps on cached batches),
TorchScript inference samples/s, and the best validation AUROC reached by the real training code
(`calcinet.training.run.train`) within the wall-clock budget on the synthetic phantom. Networks
whose training throughput would not allow two epochs within the budget are reported as GPU
configurations (`trainer=gpu`) without an AUROC. Prints a Markdown table (quoted in the README).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from calcinet.config import compose
from calcinet.models.networks import available_networks, build_network, min_patch_size
from calcinet.runtime import tune_malloc
from calcinet.training.run import train


def _median_rate(step, batch: int, repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def network_kwargs(name: str) -> dict:
    """The network of ``model=<name>`` as the configs give it (the compact default's
    ``first_stage_convs`` included), as the training below builds it."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose("train", [f"model={name}"], Path(tmp) / "run")
    return OmegaConf.to_container(cfg.model.network, resolve=True)


def throughput(network: dict, side: int, batch: int, repeats: int) -> tuple[float, float]:
    """(training samples/s, TorchScript inference samples/s) on random windowed patches."""
    torch.manual_seed(0)
    net = build_network(**network)
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.rand(batch, 1, side, side, side)
    y = (torch.arange(batch) % 2).float()

    def train_step() -> None:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x).squeeze(1), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    train_rate = _median_rate(train_step, batch, repeats)
    scripted = torch.jit.script(net.eval())

    def infer_step() -> None:
        with torch.inference_mode():
            scripted(x)

    return train_rate, _median_rate(infer_step, batch, repeats)


def _dd_hh_mm_ss(seconds: float) -> str:
    """Lightning's ``max_time`` string (a Hydra mapping would reach it as a DictConfig)."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days:02d}:{hours:02d}:{minutes:02d}:{secs:02d}"


def budget_training(name: str, side: int, budget_s: float, work: Path, cache: Path) -> dict:
    """Train with the real code for ``budget_s`` seconds; return best AUROC, epochs, wall time."""
    run_dir = work / name
    overrides = [
        f"model={name}", f"data.patch_size=[{side},{side},{side}]", "logger=none",
        "data.cache=disk", f"data.cache_dir={cache}", "trainer.max_epochs=1000",
        f"+trainer.max_time={_dd_hh_mm_ss(budget_s)}", "callbacks.early_stopping=null",
        "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={run_dir}",
    ]
    cfg = compose("train", overrides, run_dir)
    start = time.perf_counter()
    metrics = train(cfg)
    return {"auroc": metrics.get("best/val_auroc", float("nan")),
            "wall_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default=",".join(available_networks()))
    parser.add_argument("--budget-s", type=float, default=120.0)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    tuned = tune_malloc()  # as calcinet-train does

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work, cache = Path(tmp), Path(tmp) / "cache"
        for name in args.networks.split(","):
            side = max(args.patch, min_patch_size(name))
            network = network_kwargs(name)
            params = sum(p.numel() for p in build_network(**network).parameters())
            train_rate, infer_rate = throughput(network, side, args.batch, args.repeats)
            # Two epochs of the default 1600 training samples must fit in the budget.
            cpu_ok = train_rate * args.budget_s >= 2 * 1600
            result = budget_training(name, side, args.budget_s, work, cache) if cpu_ok else None
            rows.append((name, side, params, train_rate, infer_rate, result))
            print(f"done {name}", flush=True)

    print(f"\n{torch.get_num_threads()} CPU threads, torch {torch.__version__}, "
          f"batch {args.batch}, budget {args.budget_s:.0f} s per network, "
          f"malloc tuning {'on' if tuned else 'off'}\n")
    print("| network | patch | parameters | train samples/s | TorchScript inference samples/s "
          "| val AUROC within budget | wall time |")
    print("|---|---|---|---|---|---|---|")
    for name, side, params, train_rate, infer_rate, result in rows:
        auroc = f"{result['auroc']:.3f}" if result else "GPU configuration (`trainer=gpu`)"
        wall = f"{result['wall_s']:.0f} s" if result else "-"
        print(f"| `{name}` | {side}^3 | {params / 1e6:.2f} M | {train_rate:.1f} | "
              f"{infer_rate:.1f} | {auroc} | {wall} |")


if __name__ == "__main__":
    main()
