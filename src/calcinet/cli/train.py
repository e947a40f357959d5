"""``calcinet-train [overrides]``: train a model and log it to MLflow."""

from __future__ import annotations

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from calcinet.cli import CONFIG_DIR, fail
from calcinet.config import ConfigError
from calcinet.data.validation import DataValidationError
from calcinet.runtime import tune_malloc
from calcinet.tracking import TrackingUnreachableError


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Train; returns the best ``val/auroc`` (the value a Hydra sweeper optimises)."""
    tune_malloc()
    from calcinet.training.run import train

    try:
        metrics = train(cfg)
    except (ConfigError, TrackingUnreachableError) as error:
        fail(error)
    except InstantiationException as error:
        # A manifest with problems or a tracking server that does not answer: print the
        # message itself, not Hydra's one-line repr.
        if isinstance(error.__cause__, DataValidationError | TrackingUnreachableError):
            fail(error.__cause__)
        raise
    return metrics.get("best/val_auroc", metrics.get("val/auroc"))


if __name__ == "__main__":
    main()
