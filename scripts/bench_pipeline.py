"""How close the training pipeline gets to pure compute.

    python scripts/bench_pipeline.py [--epochs 4] [--num-train 256] [--augment-only]
                                     [hydra overrides ...]

End to end: the real ``train.yaml`` DataModule, LightningModule, callbacks and MLflow logging
(a throw-away SQLite store), timed per training epoch (validation excluded) after the first.
Pure compute: the same model, optimiser and batch size on batches already in memory.
Prints the median samples/s of both and their ratio for each setting (target >= 0.9), and the
first epoch's seconds (with ``trainer.compile=true`` it holds the compilation: compare the
"... compile" setting with the same setting without it), after the median time of the two
augmentation forms (``data.augment_on``) on one training batch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate

from calcinet.config import compose
from calcinet.runtime import tune_malloc

SETTINGS = {
    "workers=0 augment_on=device": ["data.num_workers=0", "data.augment_on=device"],
    "workers=1 augment_on=device": ["data.num_workers=1", "data.augment_on=device"],
    "workers=0 augment_on=loader": ["data.num_workers=0", "data.augment_on=loader"],
    "workers=1 augment_on=loader": ["data.num_workers=1", "data.augment_on=loader"],
    "workers=2 augment_on=loader": ["data.num_workers=2", "data.augment_on=loader"],
    "workers=0 cache=none": ["data.num_workers=0", "data.cache=none"],
    "workers=0 augment_on=device compile": ["data.num_workers=0", "data.augment_on=device",
                                            "trainer.compile=true"],
}
DEFAULT_SETTINGS = list(SETTINGS)[:4]


class EpochTimer(L.Callback):
    """Wall time of every training epoch (batches, optimiser, logging; no validation)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.samples: list[int] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sync(pl_module.device)
        self.start, self.count = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.count += len(batch["label"])
        if batch_idx == trainer.num_training_batches - 1:  # the epoch's work done on a GPU too
            sync(pl_module.device)
        self.last = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.times.append(self.last - self.start)
        self.samples.append(self.count)


def sync(device: torch.device) -> None:
    """Wait for the work queued on a CUDA device (timings of asynchronous GPU work); no-op else."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _config(overrides: list[str], run_dir: Path):
    return compose("train", overrides, run_dir)


def end_to_end(cfg, epochs: int) -> tuple[float, float, torch.nn.Module, dict]:
    """Median samples/s of training epochs 2.. through the real stack, and the first epoch's
    seconds."""
    from calcinet.training.run import build

    timer = EpochTimer()
    parts = build(cfg, callbacks=[timer], max_epochs=epochs, enable_progress_bar=False,
                  enable_model_summary=False)
    parts.trainer.fit(parts.module, datamodule=parts.datamodule)
    rates = [n / t for n, t in zip(timer.samples[1:], timer.times[1:], strict=True)]
    batch = next(iter(parts.datamodule.train_dataloader()))
    return statistics.median(rates), timer.times[0], parts.module, batch


def pure_compute(module: L.LightningModule, batch: dict, steps: int, repeats: int = 3) -> float:
    """Median samples/s of forward + backward + AdamW on one batch already in memory."""
    module.train()
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
    image = torch.Tensor(batch["image"]).clone().contiguous()  # a plain tensor, no MetaTensor
    label = batch["label"]
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss = module._loss(module(image), label)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
            optimizer.step()
        rates.append(steps * len(label) / (time.perf_counter() - start))
    return statistics.median(rates)


def augmentation_cost(cfg, repeats: int = 40) -> tuple[float, float]:
    """Median ms per training batch of the batched and the per-sample MONAI augmentation, on the
    configured batch of finished patches (from the memory cache)."""
    from monai.data import MetaTensor
    from monai.transforms import Compose

    from calcinet.data.augment import BatchAugment, augment_transforms

    datamodule = instantiate(cfg.data, augment_on="device", num_workers=0)
    images = next(iter(datamodule.train_dataloader()))["image"]
    batched = BatchAugment(cfg.data.hu_window, **cfg.data.augment)
    per_sample = Compose(augment_transforms(cfg.data.hu_window, **cfg.data.augment))
    samples = [MetaTensor(image.clone()) for image in images]

    def timed(step) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e3

    return (timed(lambda: batched(images)),
            timed(lambda: [per_sample({"image": sample}) for sample in samples]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--num-train", type=int, default=256)
    parser.add_argument("--settings", nargs="*", default=DEFAULT_SETTINGS,
                        help=f"which of: {', '.join(SETTINGS)}")
    parser.add_argument("--augment-only", action="store_true",
                        help="only time the two augmentation forms on one batch")
    args, overrides = parser.parse_known_args()
    tuned = tune_malloc()  # as calcinet-train does; CALCINET_MALLOC_TUNING=0 to compare
    print(f"malloc tuning {'on' if tuned else 'off'}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _config([f"data.source.num_train={args.num_train}", "data.source.num_val=32",
                       *overrides], Path(tmp) / "augment")
        batched, per_sample = augmentation_cost(cfg)
    print(f"augmentation of one batch of {cfg.data.batch_size}: batched (augment_on=device) "
          f"{batched:.1f} ms, per-sample MONAI (augment_on=loader) {per_sample:.1f} ms (medians)")
    if args.augment_only:
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        for name in args.settings:
            cfg = _config([f"data.source.num_train={args.num_train}", "data.source.num_val=32",
                           "callbacks.early_stopping=null", "callbacks.progress_bar=null",
                           *SETTINGS[name], *overrides], Path(tmp) / f"run{len(rows)}")
            L.seed_everything(0, verbose=False)
            e2e, first, module, batch = end_to_end(cfg, args.epochs)
            steps = max(4, args.num_train // cfg.data.batch_size)
            # The machine is shared: time compute twice more around a second end-to-end run
            # and keep the medians of each.
            compute_runs = [pure_compute(module, batch, steps)]
            again = end_to_end(cfg, args.epochs)
            e2e_runs, first_runs = [e2e, again[0]], [first, again[1]]
            compute_runs.append(pure_compute(module, batch, steps))
            e2e, compute = statistics.median(e2e_runs), statistics.median(compute_runs)
            rows.append((name, e2e, compute, e2e / compute, statistics.median(first_runs)))
            print(f"{name}: end-to-end {e2e:.1f}/s, compute {compute:.1f}/s", file=sys.stderr)
    print("| setting | end-to-end samples/s | pure compute samples/s | ratio | first epoch s |")
    print("|---|---|---|---|---|")
    for name, e2e, compute, ratio, first in rows:
        print(f"| {name} | {e2e:.1f} | {compute:.1f} | {ratio:.2f} | {first:.1f} |")


if __name__ == "__main__":
    main()
