"""``calcinet-cv data.num_folds=5 [overrides]``: k-fold cross-validation by patient.

Runs the real training once per fold (``data.fold=0..K-1``, each in ``<run folder>/fold_<k>``,
each an MLflow run nested under one parent run) and prints the best ``val/auroc`` of every fold
with their mean ± standard deviation.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
from pathlib import Path

import hydra
from omegaconf import DictConfig, open_dict

from calcinet.cli import CONFIG_DIR, fail
from calcinet.config import ConfigError
from calcinet.runtime import tune_malloc

DEFAULT_FOLDS = 5


def cross_validate(cfg: DictConfig) -> dict[str, float]:
    """Train every fold of ``cfg`` (``data.num_folds``, default 5); return mean and std."""
    from calcinet.training.run import train

    folds = int(cfg.data.get("num_folds") or DEFAULT_FOLDS)
    if folds < 2:
        raise ConfigError(f"data.num_folds={folds}: expected an integer >= 2")
    out = Path(cfg.paths.output_dir).resolve()
    scores: list[float] = []
    for fold in range(folds):
        fold_cfg = copy.deepcopy(cfg)
        with open_dict(fold_cfg):
            fold_cfg.data.num_folds = folds
            fold_cfg.data.fold = fold
            fold_cfg.paths.output_dir = str(out / f"fold_{fold}")
            if fold_cfg.get("logger") and fold_cfg.logger.get("mlflow"):
                fold_cfg.logger.mlflow.run_name = f"{out.name} fold {fold}"
        print(f"\n=== fold {fold + 1}/{folds} -> {fold_cfg.paths.output_dir}", flush=True)
        metrics = train(fold_cfg, parent_key=str(out))
        scores.append(metrics.get("best/val_auroc", metrics.get("val/auroc", math.nan)))
    mean = statistics.fmean(scores)
    std = statistics.stdev(scores) if len(scores) > 1 else 0.0
    lines = ["", f"Cross-validation ({folds} folds by patient), best val/auroc per fold:",
             "| fold | val/auroc |", "|---|---|"]
    lines += [f"| {k} | {s:.4f} |" for k, s in enumerate(scores)]
    lines.append(f"| mean ± std | {mean:.4f} ± {std:.4f} |")
    print("\n".join(lines), flush=True)
    summary = {"num_folds": folds, "val_auroc": scores, "mean": mean, "std": std}
    (out / "cv_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    _log_summary(out, mean, std)
    return {"cv/val_auroc_mean": mean, "cv/val_auroc_std": std}


def _log_summary(out: Path, mean: float, std: float) -> None:
    """Mean and std on the parent run of the folds (found through fold 0's run)."""
    run_file = out / "fold_0" / "mlflow_run_id.txt"
    if not run_file.is_file():
        return
    from mlflow.tracking import MlflowClient

    from calcinet.tracking import resolve_tracking_uri

    config = (out / "fold_0" / "config.yaml").read_text()
    import yaml

    logger = (yaml.safe_load(config).get("logger") or {}).get("mlflow") or {}
    uri = resolve_tracking_uri(logger.get("tracking_uri"), logger.get("root_dir") or ".")
    client = MlflowClient(tracking_uri=uri)
    try:
        parent = client.get_run(run_file.read_text().strip()).data.tags.get("mlflow.parentRunId")
        if parent:
            client.log_metric(parent, "cv/val_auroc_mean", mean)
            client.log_metric(parent, "cv/val_auroc_std", std)
    except Exception as error:  # noqa: BLE001 - the folds are done; tracking is a bonus here
        print(f"calcinet: warning: could not log the summary to MLflow ({error})")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Cross-validate; returns the mean best ``val/auroc`` over the folds."""
    tune_malloc()
    try:
        return cross_validate(cfg)["cv/val_auroc_mean"]
    except ConfigError as error:
        fail(error)


if __name__ == "__main__":
    main()
