"""``calcinet-cv data.num_folds=5 [overrides]``: k-fold cross-validation by patient.

Runs the real training once per fold (see :func:`calcinet.training.folds.cross_validate`) and
prints the best ``monitor.metric`` of every fold with their mean ± standard deviation. Exit
statuses as ``calcinet-train``.
"""

from __future__ import annotations

from omegaconf import DictConfig

from calcinet.cli import hydra_command
from calcinet.cli.train import with_exit_statuses
from calcinet.runtime import tune_malloc


@hydra_command("train", lightning=True)
def main(cfg: DictConfig) -> float | None:
    """Cross-validate; returns the mean best score over the folds."""
    tune_malloc()
    from calcinet.training.folds import cross_validate

    results = with_exit_statuses(lambda: cross_validate(cfg))
    return next(value for key, value in results.items() if key.endswith("_mean"))


if __name__ == "__main__":
    main()
