"""``calcinet-evaluate ckpt_path=PATH [overrides]``: metrics, figures and a report of a model on
a held-out set, logged to MLflow."""

from __future__ import annotations

from omegaconf import DictConfig

from calcinet.cli import fail, hydra_command, user_error
from calcinet.runtime import tune_malloc


@hydra_command("evaluate", lightning=True)
def main(cfg: DictConfig) -> float | None:
    """Evaluate; returns the AUROC (the value a Hydra sweeper would read)."""
    tune_malloc()
    from calcinet.config import ConfigError
    from calcinet.data.validation import DataValidationError
    from calcinet.evaluation import EvaluationError
    from calcinet.evaluation.run import evaluate

    try:
        report = evaluate(cfg)
    except Exception as error:
        # Data problems surface inside Hydra's instantiate: show the message itself.
        found = user_error(error, (ConfigError, EvaluationError, DataValidationError))
        if found is None:
            raise
        fail(found)
    return report["metrics"]["auroc"]["value"]


if __name__ == "__main__":
    main()
