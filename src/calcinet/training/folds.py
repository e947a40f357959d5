"""k-fold cross-validation by patient: the real training once per fold, one parent run."""

from __future__ import annotations

import copy
import json
import logging
import math
import statistics
from pathlib import Path

from omegaconf import DictConfig, open_dict

from calcinet.config import ConfigError
from calcinet.tracking import RUN_ID_FILE

log = logging.getLogger(__name__)

DEFAULT_FOLDS = 5


def cross_validate(cfg: DictConfig) -> dict[str, float]:
    """Train every fold of ``cfg``; return the mean and standard deviation of the best scores.

    ``data.num_folds`` (default 5) folds, each trained with ``data.fold=k`` in
    ``<run folder>/fold_<k>`` as an MLflow run nested under one parent run. Prints the best
    ``monitor.metric`` of every fold with mean ± std, writes ``cv_results.json`` and logs
    ``cv/<metric>_mean`` and ``_std`` on the parent run. Returns those two values.

    Raises:
        ConfigError: ``data.num_folds`` below 2, or a fold's data unusable for training.
    """
    from calcinet.training.run import best_metric, train

    folds = int(cfg.data.get("num_folds") or DEFAULT_FOLDS)
    if folds < 2:
        raise ConfigError(f"data.num_folds={folds}: expected an integer >= 2")
    metric = str(cfg.monitor.metric)
    name = metric.replace("/", "_")
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
        log.info(f"\n=== fold {fold + 1}/{folds} -> {fold_cfg.paths.output_dir}")
        metrics = train(fold_cfg, parent_key=str(out))
        scores.append(metrics.get(best_metric(cfg), metrics.get(metric, math.nan)))
    mean = statistics.fmean(scores)
    std = statistics.stdev(scores) if len(scores) > 1 else 0.0
    lines = ["", f"Cross-validation ({folds} folds by patient), best {metric} per fold:",
             f"| fold | {metric} |", "|---|---|"]
    lines += [f"| {k} | {s:.4f} |" for k, s in enumerate(scores)]
    lines.append(f"| mean ± std | {mean:.4f} ± {std:.4f} |")
    log.info("\n".join(lines))
    summary = {"num_folds": folds, "metric": metric, name: scores, "mean": mean, "std": std}
    (out / "cv_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    results = {f"cv/{name}_mean": mean, f"cv/{name}_std": std}
    _log_to_parent(out, results)
    return results


def _log_to_parent(out: Path, results: dict[str, float]) -> None:
    """``results`` on the parent run of the folds (found through fold 0's run)."""
    run_file = out / "fold_0" / RUN_ID_FILE
    if not run_file.is_file():
        return
    import yaml
    from mlflow.tracking import MlflowClient

    from calcinet.tracking import resolve_tracking_uri

    config = yaml.safe_load((out / "fold_0" / "config.yaml").read_text())
    logger = (config.get("logger") or {}).get("mlflow") or {}
    uri = resolve_tracking_uri(logger.get("tracking_uri"), logger.get("root_dir") or ".")
    client = MlflowClient(tracking_uri=uri)
    try:
        parent = client.get_run(run_file.read_text().strip()).data.tags.get("mlflow.parentRunId")
        for key, value in results.items() if parent else ():
            client.log_metric(parent, key, value)
    except Exception as error:  # noqa: BLE001 - the folds are done; tracking is a bonus here
        log.warning(f"could not log the summary to MLflow ({error})")
