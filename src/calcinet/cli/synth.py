"""``calcinet-synth output_dir=DIR num_samples=N seed=S``: write the phantom as NIfTI + manifest."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from calcinet.cli import fail, hydra_command, log, warn
from calcinet.config import ConfigError
from calcinet.runtime import tune_malloc


@hydra_command("synth")
def main(cfg: DictConfig) -> None:
    tune_malloc()
    from calcinet.data.phantom.materialize import write_dataset
    from calcinet.data.phantom.montage import render_montage
    from calcinet.data.sources import checked_phantom_config

    try:
        if int(cfg.num_samples) < 1:
            raise ConfigError(f"num_samples={cfg.num_samples!r}: expected a positive integer")
        config = checked_phantom_config(cfg.patch_size, cfg.spacing, dict(cfg.phantom),
                                        key="phantom")
    except ConfigError as error:
        fail(error)
    output_dir = Path(cfg.output_dir)
    if cfg.get("out_dir"):
        warn("out_dir= is deprecated; use output_dir=")
        output_dir = Path(cfg.out_dir)
    manifest = write_dataset(output_dir, int(cfg.num_samples), int(cfg.seed), config)
    log.info(f"Wrote {cfg.num_samples} samples and {manifest}")
    if cfg.montage:
        montage = render_montage(output_dir / "montage.png", config, seed=int(cfg.seed))
        log.info(f"Montage: {montage}")


if __name__ == "__main__":
    main()
