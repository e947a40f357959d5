"""``calcinet-synth out_dir=DIR num_samples=N seed=S``: write the phantom as NIfTI + manifest."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from calcinet.cli import CONFIG_DIR, fail
from calcinet.config import ConfigError
from calcinet.runtime import tune_malloc


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="synth")
def main(cfg: DictConfig) -> None:
    tune_malloc()
    from calcinet.data.phantom.materialize import write_dataset
    from calcinet.data.phantom.montage import render_montage
    from calcinet.data.sources import phantom_config

    try:
        if int(cfg.num_samples) < 1:
            raise ConfigError(f"num_samples={cfg.num_samples!r}: expected a positive integer")
        config = phantom_config(cfg.patch_size, cfg.spacing, **cfg.phantom)
    except (ConfigError, ValueError, TypeError) as error:
        fail(error)
    out_dir = Path(cfg.out_dir)
    manifest = write_dataset(out_dir, int(cfg.num_samples), int(cfg.seed), config)
    print(f"Wrote {cfg.num_samples} samples and {manifest}")
    if cfg.montage:
        print(f"Montage: {render_montage(out_dir / 'montage.png', config, seed=int(cfg.seed))}")


if __name__ == "__main__":
    main()
