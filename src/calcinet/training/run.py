"""``train(cfg)``: build everything a composed config describes, fit, and record the run."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger, MLFlowLogger
from omegaconf import DictConfig, OmegaConf

import calcinet
from calcinet import __version__
from calcinet.config import validate_train_config
from calcinet.data.datamodule import CalciDataModule
from calcinet.tracking import git_commit, run_url, ui_command

log = logging.getLogger(__name__)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are kept as one value."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        flat.update(_flatten(value, name) if isinstance(value, dict) and value else {name: value})
    return flat


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a config group whose value is not null."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node is not None]


def _mlflow(loggers: list[Logger]) -> MLFlowLogger | None:
    return next((lg for lg in loggers if isinstance(lg, MLFlowLogger)), None)


def _loss_options(cfg: DictConfig, datamodule: CalciDataModule) -> dict[str, Any]:
    """``model.loss`` with ``pos_weight: auto`` replaced by benign/malignant of the train split."""
    loss = OmegaConf.to_container(cfg.model.get("loss") or {}, resolve=True)
    if loss.get("pos_weight") == "auto":
        counts = datamodule.class_counts("train")
        loss["pos_weight"] = counts[0] / max(1, counts[1])
        log.info("pos_weight=auto -> %.3f (benign %d / malignant %d)", loss["pos_weight"],
                 counts[0], counts[1])
    return loss


def train(cfg: DictConfig) -> dict[str, float]:
    """Train the model ``cfg`` describes; return the final callback metrics as floats.

    Everything the run writes lives in ``cfg.paths.output_dir``: the resolved config,
    ``checkpoints/`` (best by ``val/auroc`` and ``last.ckpt``), logs and artifacts.
    """
    validate_train_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))

    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True)

    datamodule: CalciDataModule = instantiate(cfg.data)
    if cfg.data.get("validate_only"):
        # The source checked everything when it was built and kept the report instead of raising.
        print(datamodule.source.validation_report(), flush=True)
        raise SystemExit(1 if getattr(datamodule.source, "problems", None) else 0)
    module = instantiate(cfg.model, loss=_loss_options(cfg, datamodule))

    callbacks: list[Callback] = _instantiate_all(cfg.get("callbacks"))
    loggers: list[Logger] = _instantiate_all(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)

    mlflow_logger = _mlflow(loggers)
    counts = datamodule.class_counts("train")
    module.run_info = {
        "calcinet_version": __version__,
        "config_hash": hashlib.sha256(
            json.dumps(resolved, sort_keys=True, default=str).encode()
        ).hexdigest()[:16],
        "data_fingerprint": datamodule.source.fingerprint(),
        "output_dir": str(output_dir.resolve()),
    }
    if mlflow_logger is not None:
        mlflow_logger.log_hyperparams(_flatten(resolved))
        client, run_id = mlflow_logger.experiment, mlflow_logger.run_id
        commit = git_commit(Path(calcinet.__file__).parent) or git_commit(cfg.paths.root_dir)
        module.run_info.update(mlflow_run_id=run_id, mlflow_tracking_uri=mlflow_logger._tracking_uri,
                               mlflow_experiment_id=mlflow_logger.experiment_id)
        tags = {
            "calcinet.version": __version__,
            "calcinet.config_hash": module.run_info["config_hash"],
            "calcinet.data_fingerprint": module.run_info["data_fingerprint"],
            "calcinet.data_source": getattr(datamodule.source, "kind", "unknown"),
            "calcinet.output_dir": str(output_dir.resolve()),
        }
        if commit:
            tags["mlflow.source.git.commit"] = commit
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        client.log_metric(run_id, "data/train_malignant_fraction",
                          counts[1] / max(1, counts[0] + counts[1]))
        artifacts = output_dir / "artifacts"
        for path in datamodule.source.write_artifacts(artifacts):
            client.log_artifact(run_id, str(path), "data")

    ckpt_path = cfg.get("ckpt_path")
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)

    checkpoint = next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
    best = checkpoint.best_model_path if checkpoint else ""
    if cfg.get("test") and trainer.state.finished:
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None)

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if checkpoint is not None and checkpoint.best_model_score is not None:
        metrics["best/val_auroc"] = float(checkpoint.best_model_score)
    if mlflow_logger is not None:
        client.log_artifact(run_id, str(output_dir / "config.yaml"))
        hydra_dir = output_dir / ".hydra"
        if hydra_dir.is_dir():
            client.log_artifacts(run_id, str(hydra_dir), "hydra")
        if best:
            client.log_artifact(run_id, best, "checkpoints")
            if "best/val_auroc" in metrics:
                client.log_metric(run_id, "best/val_auroc", metrics["best/val_auroc"])

    _report(output_dir, best, checkpoint, mlflow_logger, metrics)
    return metrics


def _report(output_dir: Path, best: str, checkpoint: ModelCheckpoint | None,
            mlflow_logger: MLFlowLogger | None, metrics: dict[str, float]) -> None:
    """Tell the user where the run's results are."""
    lines = ["", f"Run folder:       {output_dir.resolve()}"]
    if best:
        score = checkpoint.best_model_score if checkpoint else None
        shown = f" (val/auroc={float(score):.4f})" if score is not None else ""
        lines.append(f"Best checkpoint:  {best}{shown}")
    if checkpoint and checkpoint.last_model_path:
        lines.append(f"Last checkpoint:  {checkpoint.last_model_path}")
    finite = {k: v for k, v in metrics.items() if k.startswith("val/") and math.isfinite(v)}
    if finite:
        lines.append("Final validation: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(finite.items())))
    if mlflow_logger is not None:
        uri = mlflow_logger._tracking_uri
        lines.append(f"MLflow run:       {mlflow_logger.run_id} in {uri}")
        lines.append(f"Open the MLflow UI: {ui_command(uri)}")
        lines.append(f"  then browse to {run_url(uri, mlflow_logger.experiment_id, mlflow_logger.run_id)}")
    print("\n".join(lines), flush=True)
