"""Test helpers: composing the real Hydra configs and running the real entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from calcinet.config import compose

REPO = Path(__file__).resolve().parents[1]
#: The MLflow experiment of every debug=... run (conf/logger/_mlflow_debug.yaml).
DEBUG_EXPERIMENT = "calcinet-debug"


def compose_config(
    name: str, overrides: Sequence[str] = (), run_dir: Path | None = None
) -> DictConfig:
    """Compose ``conf/<name>.yaml`` as the entry point would, with ``${hydra:...}`` resolvable."""
    return compose(name, overrides, run_dir)


def run_cli(
    args: Sequence[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m calcinet <args>``-style entry points through their console scripts."""
    bin_dir = Path(sys.executable).parent
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("HYDRA_FULL_ERROR", "0")
    return subprocess.run(
        [str(bin_dir / args[0]), *args[1:]], cwd=cwd, env=full_env, capture_output=True,
        text=True, timeout=timeout,
    )


def popen_cli(args: Sequence[str], cwd: Path, **kwargs) -> subprocess.Popen[str]:
    """Start an entry point as :func:`run_cli` runs it, without waiting (to signal it, or to
    close its stdout); ``kwargs`` go to :class:`subprocess.Popen` (text mode)."""
    return subprocess.Popen([str(Path(sys.executable).parent / args[0]), *args[1:]], cwd=cwd,
                            text=True, **kwargs)


def make_checkpoint(
    folder: Path,
    patch_size: Sequence[int] = (24, 24, 24),
    spacing: Sequence[float] = (1.5, 1.5, 1.5),
    network: dict | None = None,
    num_train: int = 16,
    num_val: int = 16,
    epochs: int = 1,
    seed: int = 0,
) -> Path:
    """Train a tiny real model on the synthetic phantom and return its best checkpoint path.

    Uses the real DataModule, LightningModule and ModelCheckpoint (no MLflow), so checkpoints made
    here have exactly the layout of those ``calcinet-train`` writes.
    """
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from calcinet.data.datamodule import CalciDataModule
    from calcinet.data.sources import SyntheticSource
    from calcinet.training.module import CalciModule

    L.seed_everything(seed, verbose=False)
    window = (-200.0, 1800.0)
    source = SyntheticSource(num_train=num_train, num_val=num_val, num_test=num_val, seed=seed,
                             patch_size=patch_size, spacing=spacing)
    datamodule = CalciDataModule(source, patch_size, spacing, window, batch_size=8,
                                 num_workers=0, cache_workers=1, augment=None)
    module = CalciModule(
        network=network or {"name": "compact", "channels": [8, 16], "dropout": 0.0},
        optim={"optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3}},
        preprocessing={"patch_size": list(patch_size), "spacing": list(spacing),
                       "hu_window": list(window)},
    )
    module.run_info = {"config_hash": "0" * 16, "data_fingerprint": source.fingerprint()}
    checkpoint = ModelCheckpoint(dirpath=folder, monitor="val/auroc", mode="max", save_last=True,
                                 filename="best")
    trainer = L.Trainer(max_epochs=epochs, logger=False, callbacks=[checkpoint],
                        enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=folder)
    trainer.fit(module, datamodule=datamodule)
    return Path(checkpoint.best_model_path)


def quick_checkpoint(
    folder: Path,
    network: dict,
    patch_size: Sequence[int] = (16, 16, 16),
    spacing: Sequence[float] = (1.5, 1.5, 1.5),
) -> Path:
    """A real Lightning checkpoint of ``network`` after one optimiser step on random patches.

    For tests that need the checkpoint format of every network but not a trained model: no
    phantom rendering, no validation loop.
    """
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from calcinet.training.module import CalciModule

    L.seed_everything(0, verbose=False)
    module = CalciModule(
        network=network,
        optim={"optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3}},
        preprocessing={"patch_size": list(patch_size), "spacing": list(spacing),
                       "hu_window": [-200.0, 1800.0]},
    )
    batch = {"image": torch.rand(2, 1, *patch_size), "label": torch.tensor([0, 1])}
    trainer = L.Trainer(max_steps=1, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=folder)
    trainer.fit(module, train_dataloaders=DataLoader([batch], batch_size=None))
    path = Path(folder) / "model.ckpt"
    trainer.save_checkpoint(path)
    return path
