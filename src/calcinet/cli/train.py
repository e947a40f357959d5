"""``calcinet-train [overrides]``: train a model and log it to MLflow.

Exit status (see :data:`calcinet.cli.EXIT_STATUSES`): 0 trained; 1 ``data.validate_only=true``
found problems; 2 bad input or override (one line on stderr); 130 Ctrl+C; 143 (128 + SIGTERM)
stopped by SIGTERM, ``last.ckpt`` kept for ``resume=true``.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import TypeVar

from omegaconf import DictConfig

from calcinet.cli import fail, hydra_command, log, user_error
from calcinet.config import ConfigError
from calcinet.runtime import tune_malloc

Result = TypeVar("Result")


def with_exit_statuses(run: Callable[[], Result]) -> Result:
    """``run()`` with the training commands' exit statuses: 143 when a SIGTERM stopped it, 2
    with one line for bad input (also when Hydra's instantiate wrapped it), else its result.
    In a multirun the bad-input error is raised instead, so that the sweeper fails that trial
    (one line) and goes on with the next."""
    # Imported when the command runs, not when it starts: `--help` and tab completion stay light.
    from calcinet.data.validation import DataValidationError
    from calcinet.tracking import TrackingUnreachableError
    from calcinet.training.signals import TrainingStopped

    try:
        return run()
    except TrainingStopped:
        sys.exit(128 + signal.SIGTERM)
    except Exception as error:
        found = user_error(error, (ConfigError, DataValidationError, TrackingUnreachableError))
        if found is None:
            raise
        if _in_multirun():  # a sweep's trial: the sweeper marks it FAIL and goes on
            raise found from None
        fail(found)


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra_command("train", lightning=True)
def main(cfg: DictConfig) -> float | None:
    """Train; returns the best score of ``monitor.metric`` (what a Hydra sweeper optimises)."""
    tune_malloc()
    from calcinet.training.run import best_metric, data_report, train

    def run() -> dict[str, float]:
        if cfg.data.get("validate_only"):
            report, usable = data_report(cfg)
            log.info(report)
            sys.exit(0 if usable else 1)
        return train(cfg)

    metrics = with_exit_statuses(run)
    return metrics.get(best_metric(cfg), metrics.get(str(cfg.monitor.metric)))


if __name__ == "__main__":
    main()
