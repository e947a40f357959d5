"""Console entry points. Each is thin: compose the config, hand it to the package, report."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from calcinet.config import ConfigError


def _config_dir() -> str:
    """``conf/`` shipped inside the package (wheel), else the source tree's top-level ``conf/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"calcinet: no config folder next to {here}")


CONFIG_DIR = _config_dir()


def _fail(error: Exception) -> None:
    print(f"calcinet: error: {error}", file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def train(cfg: DictConfig) -> float | None:
    """``calcinet-train [overrides]``: train and log to MLflow; returns the best val/auroc."""
    from calcinet.training.run import train as run_training

    try:
        metrics = run_training(cfg)
    except ConfigError as error:
        _fail(error)
    return metrics.get("best/val_auroc", metrics.get("val/auroc"))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="synth")
def synth(cfg: DictConfig) -> None:
    """``calcinet-synth out_dir=DIR num_samples=N seed=S``: write NIfTI files + manifest.csv."""
    from calcinet.data.phantom.materialize import write_dataset
    from calcinet.data.phantom.montage import render_montage
    from calcinet.data.sources import phantom_config

    try:
        if int(cfg.num_samples) < 1:
            raise ConfigError(f"num_samples={cfg.num_samples!r}: expected a positive integer")
        config = phantom_config(cfg.patch_size, cfg.spacing, **cfg.phantom)
    except (ConfigError, ValueError, TypeError) as error:
        _fail(error)
    out_dir = Path(cfg.out_dir)
    manifest = write_dataset(out_dir, int(cfg.num_samples), int(cfg.seed), config)
    print(f"Wrote {cfg.num_samples} samples and {manifest}")
    if cfg.montage:
        print(f"Montage: {render_montage(out_dir / 'montage.png', config, seed=int(cfg.seed))}")
