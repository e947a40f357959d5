"""calcinet's training loop against pure compute and two peer loops, side by side in one run.

    python scripts/bench_loops.py [--epochs 4] [--num-train 256] [--rounds 2] [--peer-workers 2]
                                  [hydra overrides ...]

Every loop trains the same network (the configured one, a fresh initialisation each time) with
the same batch size, optimiser, loss and augmentation probabilities on the same finished training
patches (the phantom's windowed 48^3 patches, rendered once):

- **calcinet**: the real ``train.yaml`` stack (DataModule with its memory cache, batched
  augmentation on the device, LightningModule, callbacks, MLflow logging to a throw-away SQLite
  store), as ``scripts/bench_pipeline.py`` times it;
- **pure compute**: a plain PyTorch loop over batches already stacked in memory, no augmentation:
  float32 contiguous, float32 ``channels_last_3d``, and where the CPU computes bfloat16
  natively (``--bf16 auto``; ``on`` to time the emulated kind anyway) bf16 autocast, contiguous
  and ``channels_last_3d``; the fastest of them is the ceiling;
- **MONAI tutorial**: ``CacheDataset`` (the patches cached) with per-sample random transforms
  (``RandFlipd``, ``RandRotate90d``, ``RandAffined``, ``RandGaussianNoised``) in a ``DataLoader``
  with ``--peer-workers`` workers and a plain loop, as MONAI's 3D classification tutorials write it;
- **Lightning template**: a LightningModule + LightningDataModule in the style of
  lightning-hydra-template, a map-style ``Dataset`` applying a torchvision ``Compose`` of
  per-sample transforms (flips, 90-degree turns, ``RandomAffine`` in-plane, ``GaussianNoise``) in
  ``--peer-workers`` loader workers.

Each loop's training samples/s is the median over its epochs after the first, then the median
over ``--rounds`` rounds (the loops interleaved, round by round).

The two peer loops train under the trainer's precision, as calcinet's does (float32 on a CPU
without native bf16). On a GPU (``trainer=gpu``: one CUDA device, bf16-mixed) every loop runs
there: the peer loops copy their batches from pinned memory, bf16 pure compute is always timed
(native on CUDA), and epochs are timed after ``torch.cuda.synchronize()``.

Prints one Markdown table: samples/s, the ratio to calcinet's loop, and calcinet's ratio to the
fastest pure-compute path (the README's pipeline ratio).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from bench_pipeline import EpochTimer, _config, end_to_end, sync
from calcinet.models.networks import build_network
from calcinet.runtime import native_bf16_cpu, tune_malloc


def _device(cfg) -> torch.device:
    """The trainer's device: ``cuda`` for ``trainer.accelerator=gpu``, else the CPU."""
    return torch.device("cuda" if cfg.trainer.accelerator in ("gpu", "cuda") else "cpu")


def _bf16(cfg) -> bool:
    """Whether the trainer computes in bf16 mixed precision (the peer loops follow it)."""
    return str(cfg.trainer.precision).startswith("bf16")


def _network(cfg, channels_last: bool = False) -> torch.nn.Module:
    net = build_network(**cfg.model.network).to(_device(cfg))
    return net.to(memory_format=torch.channels_last_3d) if channels_last else net


def _optimizer(cfg, net: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(net.parameters(), lr=cfg.optim.optimizer.lr,
                             weight_decay=cfg.optim.optimizer.weight_decay)


def _loss(logit: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logit.float().squeeze(1), label.float())


def patches(cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """The training split's finished patches ``[N, 1, X, Y, Z]`` (windowed to [0, 1]) and labels
    ``[N]``, as calcinet's memory cache serves them."""
    datamodule = instantiate(cfg.data, augment_on="device", num_workers=0)
    datamodule.setup("fit")
    images, labels = [], []
    for batch in datamodule.train_dataloader():
        images.append(torch.Tensor(batch["image"]).clone())
        labels.append(torch.as_tensor(batch["label"]))
    return torch.cat(images), torch.cat(labels)


def _epochs(run_epoch: Callable[[], int], epochs: int, device: torch.device) -> float:
    """Median samples/s of epochs 2.. (the first pays warm-up: allocator, workers, caches)."""
    rates = []
    for _ in range(epochs):
        sync(device)
        start = time.perf_counter()
        n = run_epoch()
        sync(device)
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates[1:])


def pure_compute(cfg, images, labels, epochs: int, channels_last: bool, bf16: bool) -> float:
    """Plain PyTorch on batches already in memory: forward, backward, clipping, AdamW."""
    torch.manual_seed(0)
    device = _device(cfg)
    net = _network(cfg, channels_last).train()
    opt = _optimizer(cfg, net)
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    b = cfg.data.batch_size
    batches = [(images[i:i + b].to(device).contiguous(memory_format=fmt),
                labels[i:i + b].to(device)) for i in range(0, len(labels) - b + 1, b)]

    def epoch() -> int:
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logit = net(x)
            _loss(logit, y).backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
        return len(batches) * b

    return _epochs(epoch, epochs, device)


def monai_tutorial(cfg, images, labels, epochs: int, workers: int) -> float:
    """CacheDataset + per-sample MONAI random transforms in a DataLoader, plain loop."""
    from monai.data import CacheDataset, DataLoader
    from monai.transforms import (
        Compose,
        RandAffined,
        RandFlipd,
        RandGaussianNoised,
        RandRotate90d,
    )

    a = cfg.data.augment
    lo, hi = cfg.data.hu_window
    rotate = math.radians(a.rotate_deg)
    transforms = Compose([
        *(RandFlipd(keys="image", prob=a.flip_prob, spatial_axis=axis) for axis in range(3)),
        RandRotate90d(keys="image", prob=a.rotate90_prob, spatial_axes=(0, 1)),
        RandAffined(keys="image", prob=a.affine_prob, rotate_range=(rotate,) * 3,
                    scale_range=(a.scale,) * 3, mode="bilinear", padding_mode="border"),
        RandGaussianNoised(keys="image", prob=a.noise_prob, std=a.noise_std_hu / (hi - lo)),
    ])
    data = [{"image": images[i].numpy(), "label": float(labels[i])} for i in range(len(labels))]
    dataset = CacheDataset(data, transform=transforms, cache_rate=1.0, num_workers=None,
                           progress=False)
    device = _device(cfg)
    loader = DataLoader(dataset, batch_size=cfg.data.batch_size, shuffle=True, drop_last=True,
                        num_workers=workers, persistent_workers=workers > 0,
                        pin_memory=device.type == "cuda")
    torch.manual_seed(0)
    net = _network(cfg).train()
    opt = _optimizer(cfg, net)

    def epoch() -> int:
        n = 0
        for batch in loader:
            x = batch["image"].as_tensor().to(device, non_blocking=True)
            y = batch["label"].to(device, non_blocking=True)
            opt.zero_grad()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=_bf16(cfg)):
                logit = net(x)
            _loss(logit, y).backward()
            opt.step()
            n += len(y)
        return n

    return _epochs(epoch, epochs, device)


class _TemplateDataset(torch.utils.data.Dataset):
    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return {"image": self.transform(self.images[i]), "label": self.labels[i]}


class _TemplateDataModule(L.LightningDataModule):
    def __init__(self, images, labels, transform, batch_size: int, workers: int, pin: bool):
        super().__init__()
        self.train_set = _TemplateDataset(images, labels, transform)
        self.batch_size, self.workers, self.pin = batch_size, workers, pin

    def train_dataloader(self):
        return torch.utils.data.DataLoader(
            self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True,
            num_workers=self.workers, persistent_workers=self.workers > 0,
            pin_memory=self.pin)


class _TemplateModule(L.LightningModule):
    def __init__(self, net: torch.nn.Module, cfg):
        super().__init__()
        self.net, self.cfg = net, cfg

    def training_step(self, batch, batch_idx):
        loss = _loss(self.net(batch["image"]), batch["label"])
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return _optimizer(self.cfg, self.net)


def lightning_template(cfg, images, labels, epochs: int, workers: int) -> float:
    """Lightning with a torchvision-style per-sample pipeline in loader workers."""
    from torchvision.transforms import v2

    a = cfg.data.augment
    lo, hi = cfg.data.hu_window
    transform = v2.Compose([
        v2.RandomHorizontalFlip(a.flip_prob),
        v2.RandomVerticalFlip(a.flip_prob),
        v2.RandomApply([v2.Lambda(lambda t: t.flip(-3))], p=a.flip_prob),
        v2.RandomApply([v2.Lambda(lambda t: t.rot90(1, (-3, -2)))], p=a.rotate90_prob),
        v2.RandomApply([v2.RandomAffine(degrees=a.rotate_deg, scale=(1 - a.scale, 1 + a.scale))],
                       p=a.affine_prob),
        v2.RandomApply([v2.GaussianNoise(sigma=a.noise_std_hu / (hi - lo), clip=False)],
                       p=a.noise_prob),
    ])
    torch.manual_seed(0)
    timer = EpochTimer()
    trainer = L.Trainer(accelerator=cfg.trainer.accelerator, devices=1, max_epochs=epochs,
                        precision=cfg.trainer.precision, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, gradient_clip_val=1.0, callbacks=[timer])
    trainer.fit(_TemplateModule(_network(cfg), cfg),
                datamodule=_TemplateDataModule(images, labels, transform, cfg.data.batch_size,
                                               workers, _device(cfg).type == "cuda"))
    rates = [n / t for n, t in zip(timer.samples[1:], timer.times[1:], strict=True)]
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--num-train", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--peer-workers", type=int, default=2,
                        help="DataLoader workers of the two peer loops")
    parser.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                        help="time bf16 pure compute: auto = where the CPU computes bfloat16 "
                             "natively (elsewhere it is emulated, many times slower)")
    args, overrides = parser.parse_known_args()
    if args.epochs < 2 or args.rounds < 1:
        parser.error("--epochs must be >= 2 (the first is left out) and --rounds >= 1")
    tune_malloc()  # as calcinet's commands do, for every loop alike
    loops: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        common = [f"data.source.num_train={args.num_train}", "data.source.num_val=32",
                  "callbacks.early_stopping=null", "callbacks.progress_bar=null", *overrides]
        cfg = _config(common, Path(tmp) / "data")
        device = _device(cfg)
        bf16 = args.bf16 == "on" or (args.bf16 == "auto" and (
            device.type == "cuda" or native_bf16_cpu()))
        images, labels = patches(cfg)
        where = (torch.cuda.get_device_name(device) if device.type == "cuda"
                 else f"{torch.get_num_threads()} CPU threads")
        print(f"{len(labels)} training patches {tuple(images.shape[1:])}, batch "
              f"{cfg.data.batch_size}, network {cfg.model.network.name}, precision "
              f"{cfg.trainer.precision}, channels_last {cfg.model.channels_last}; {where}; "
              f"torch {torch.__version__}", file=sys.stderr)
        for r in range(args.rounds):
            run_cfg = _config(common, Path(tmp) / f"calcinet{r}")
            L.seed_everything(0, verbose=False)
            timed = {
                "calcinet (`calcinet-train` stack)":
                    lambda c=run_cfg: end_to_end(c, args.epochs)[0],
                "pure compute, float32": lambda: pure_compute(
                    cfg, images, labels, args.epochs, False, False),
                "pure compute, float32 channels_last_3d": lambda: pure_compute(
                    cfg, images, labels, args.epochs, True, False),
            }
            if bf16:
                timed["pure compute, bf16 autocast"] = lambda: pure_compute(
                    cfg, images, labels, args.epochs, False, True)
                timed["pure compute, bf16 autocast channels_last_3d"] = lambda: pure_compute(
                    cfg, images, labels, args.epochs, True, True)
            timed |= {
                "MONAI tutorial (CacheDataset + per-sample transforms)": lambda: monai_tutorial(
                    cfg, images, labels, args.epochs, args.peer_workers),
                "Lightning template (torchvision-style per-sample pipeline)":
                    lambda: lightning_template(cfg, images, labels, args.epochs,
                                               args.peer_workers),
            }
            for name, loop in timed.items():
                rate = loop()
                loops.setdefault(name, []).append(rate)
                print(f"round {r + 1}: {name}: {rate:.1f} samples/s", file=sys.stderr)
    rate = {name: statistics.median(v) for name, v in loops.items()}
    ours = rate["calcinet (`calcinet-train` stack)"]
    fastest = max((v, k) for k, v in rate.items() if k.startswith("pure compute"))
    print("| loop | samples/s | / calcinet |")
    print("|---|---|---|")
    for name, v in rate.items():
        print(f"| {name} | {v:.1f} | {v / ours:.2f} |")
    print(f"\ncalcinet / fastest pure compute ({fastest[1].removeprefix('pure compute, ')}): "
          f"{ours / fastest[0]:.2f}; medians of {args.rounds} rounds, epochs 2-{args.epochs} of "
          f"{args.num_train} patches each"
          + (f"; {device.type}, calcinet and peers at precision {cfg.trainer.precision}")
          + ("" if bf16 else "; bf16 not timed (not native on this CPU: --bf16 on to time it)"))


if __name__ == "__main__":
    main()
