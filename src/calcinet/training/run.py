"""``train(cfg)``: build everything a composed config describes, fit, and record the run."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger, MLFlowLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

import calcinet
from calcinet import __version__
from calcinet.config import validate_train_config
from calcinet.data.datamodule import CalciDataModule
from calcinet.tracking import (
    RUN_ID_FILE,
    git_commit,
    parent_run,
    report_to_parent,
    run_url,
    ui_command,
)
from calcinet.training.signals import SigtermFlagOnly, relay_sigterm, spawns_workers

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


def _safe(mlflow_logger: MLFlowLogger, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    """An MLflow call that, once the run has started, warns instead of stopping training."""
    guarded = getattr(mlflow_logger, "guarded", None)
    return guarded(what, call, *args, **kwargs) if guarded else call(*args, **kwargs)


def _checkpoint_dir(cfg: DictConfig, output_dir: Path) -> Path:
    dirpath = OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath")
    return Path(dirpath) if dirpath else output_dir / "checkpoints"


def _resume_state(cfg: DictConfig, output_dir: Path) -> tuple[str | None, str | None]:
    """``(checkpoint, MLflow run id)`` to continue from: ``last.ckpt`` and ``mlflow_run_id.txt``
    of the run folder when ``resume=true``, else ``(ckpt_path, None)``."""
    if not cfg.get("resume"):
        return cfg.get("ckpt_path"), None
    last = _checkpoint_dir(cfg, output_dir) / "last.ckpt"
    run_file = output_dir / RUN_ID_FILE
    run_id = run_file.read_text().strip() or None if run_file.is_file() else None
    if cfg.get("ckpt_path"):
        return cfg.ckpt_path, run_id
    if last.is_file():
        log.info("resume=true: continuing from %s (MLflow run %s)", last, run_id)
        return str(last), run_id
    message = (f"resume=true but {last} does not exist: starting from scratch in {output_dir} "
               "(pass the interrupted run's folder as hydra.run.dir=...)")
    log.warning(message)
    print(f"calcinet: warning: {message}", flush=True)
    return None, run_id


def _sweep_key() -> str | None:
    """The sweep folder when this run is a trial of a Hydra multirun, else None."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return str(Path(hydra_cfg.sweep.dir).resolve())


def _under_torchrun() -> bool:
    """Whether torchrun (torch.distributed.elastic) started this process as one of the ranks."""
    return "TORCHELASTIC_RUN_ID" in os.environ and "LOCAL_RANK" in os.environ


def _trainer_overrides(cfg: DictConfig) -> dict[str, Any]:
    """Processes started by torchrun already exist: use plain DDP there, never spawn more."""
    strategy = cfg.trainer.get("strategy")
    if _under_torchrun() and isinstance(strategy, str) and strategy.startswith("ddp"):
        return {"strategy": "ddp"}
    return {}


def _best_score(checkpoint: ModelCheckpoint | None, best: str) -> float | None:
    """The monitored score of the best checkpoint; read from the file after ``ddp_spawn``,
    whose worker processes do not send the score back to this one."""
    if checkpoint is None or not best:
        return None
    if checkpoint.best_model_score is not None:
        return float(checkpoint.best_model_score)
    saved = torch.load(best, map_location="cpu", weights_only=False)
    value = saved.get("calcinet", {}).get("val_metrics", {}).get(checkpoint.monitor or "")
    return None if value is None else float(value)


def _loss_options(cfg: DictConfig, datamodule: CalciDataModule) -> dict[str, Any]:
    """``model.loss`` with ``pos_weight: auto`` replaced by benign/malignant of the train split."""
    loss = OmegaConf.to_container(cfg.model.get("loss") or {}, resolve=True)
    if loss.get("pos_weight") == "auto":
        counts = datamodule.class_counts("train")
        loss["pos_weight"] = counts[0] / max(1, counts[1])
        log.info("pos_weight=auto -> %.3f (benign %d / malignant %d)", loss["pos_weight"],
                 counts[0], counts[1])
    return loss


def train(cfg: DictConfig, parent_key: str | None = None) -> dict[str, float]:
    """Train the model ``cfg`` describes; return the final callback metrics as floats.

    Everything the run writes lives in ``cfg.paths.output_dir``: the resolved config,
    ``checkpoints/`` (best by ``val/auroc`` and ``last.ckpt``), ``mlflow_run_id.txt``, logs and
    artifacts. ``resume=true`` continues the run of that folder. Trials of a Hydra multirun (and
    runs given a ``parent_key``, e.g. cross-validation folds) are nested under one parent run.
    """
    validate_train_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    ckpt_path, resume_run_id = _resume_state(cfg, output_dir)
    is_zero = rank_zero_only.rank == 0
    if is_zero:
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
    loggers: list[Logger] = [
        instantiate(node, **({"run_id": resume_run_id} if name == "mlflow" and resume_run_id
                             else {}))
        for name, node in (cfg.get("logger") or {}).items() if node is not None
    ]
    if not loggers:  # logger=none: nothing would receive the learning rates, and Lightning
        # refuses a LearningRateMonitor without a logger.
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    callbacks.append(SigtermFlagOnly())  # SIGTERM under DDP without a collective in the handler
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers,
                                     **_trainer_overrides(cfg))

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
    if mlflow_logger is not None and not is_zero:
        mlflow_logger = None  # only rank 0 talks to MLflow (Lightning's loggers do the same)
    if mlflow_logger is not None:
        client, run_id = mlflow_logger.experiment, mlflow_logger.run_id  # fails fast if down
        (output_dir / RUN_ID_FILE).write_text(run_id + "\n")
        if resume_run_id:  # KILLED after a SIGTERM, still RUNNING after a SIGKILL
            client.update_run(run_id, status="RUNNING")
        parent_key = parent_key or _sweep_key()
        parent_id = None
        if parent_key and not resume_run_id:
            parent_id = parent_run(client, mlflow_logger.experiment_id, parent_key,
                                   name=Path(parent_key).name)
            client.set_tag(run_id, "mlflow.parentRunId", parent_id)
        if not resume_run_id:  # a resumed run has its parameters already
            mlflow_logger.log_hyperparams(_flatten(resolved))
        commit = git_commit(Path(calcinet.__file__).parent) or git_commit(cfg.paths.root_dir)
        module.run_info.update(
            mlflow_run_id=run_id, mlflow_tracking_uri=mlflow_logger._tracking_uri,
            mlflow_experiment_id=mlflow_logger.experiment_id,
        )
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
        if not resume_run_id:
            client.log_metric(run_id, "data/train_malignant_fraction",
                              counts[1] / max(1, counts[0] + counts[1]))
        artifacts = output_dir / "artifacts"
        for path in datamodule.source.write_artifacts(artifacts):
            _safe(mlflow_logger, "uploading data artifacts", client.log_artifact, run_id,
                  str(path), "data")

    try:
        with relay_sigterm(trainer):
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except SIGTERMException:
        # Lightning stops at the end of the batch it is in; last.ckpt keeps the last finished
        # epoch. Exit as a process ended by SIGTERM does (128 + 15), never as a success.
        if is_zero:
            # Under ddp_spawn this process did not train: its trainer knows no epoch.
            epoch = None if spawns_workers(trainer) else trainer.current_epoch
            _report_stopped(output_dir, _checkpoint_dir(cfg, output_dir), epoch)
        raise SystemExit(128 + signal.SIGTERM) from None

    checkpoint = next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
    best = checkpoint.best_model_path if checkpoint else ""
    if cfg.get("test") and trainer.state.finished:
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None)

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    best_score = _best_score(checkpoint, best)
    if best_score is not None:
        metrics["best/val_auroc"] = best_score
    if mlflow_logger is not None:
        _safe(mlflow_logger, "uploading the config", client.log_artifact, run_id,
              str(output_dir / "config.yaml"))
        hydra_dir = output_dir / ".hydra"
        if hydra_dir.is_dir():
            _safe(mlflow_logger, "uploading the Hydra config", client.log_artifacts, run_id,
                  str(hydra_dir), "hydra")
        if best:
            _safe(mlflow_logger, "uploading the best checkpoint", client.log_artifact, run_id,
                  best, "checkpoints")
            if "best/val_auroc" in metrics:
                _safe(mlflow_logger, "logging best/val_auroc", client.log_metric, run_id,
                      "best/val_auroc", metrics["best/val_auroc"])
                if parent_id is not None:
                    _safe(mlflow_logger, "updating the parent run", report_to_parent, client,
                          parent_id, run_id, metrics["best/val_auroc"], str(output_dir))

    if is_zero:
        _report(output_dir, best, checkpoint, mlflow_logger, metrics)
    return metrics


def _report_stopped(output_dir: Path, checkpoints: Path, epoch: int | None) -> None:
    """Tell the user how to continue a run stopped by SIGTERM (in ``epoch`` when known)."""
    last = checkpoints / "last.ckpt"
    saved = f"{last} holds the last finished epoch" if last.is_file() else "no epoch finished"
    where = "" if epoch is None else f" in epoch {epoch}"
    print(f"calcinet: stopped by SIGTERM{where}; {saved}. Continue with the same "
          f"command plus hydra.run.dir={output_dir.resolve()} resume=true", flush=True)


def _report(output_dir: Path, best: str, checkpoint: ModelCheckpoint | None,
            mlflow_logger: MLFlowLogger | None, metrics: dict[str, float]) -> None:
    """Tell the user where the run's results are."""
    lines = ["", f"Run folder:       {output_dir.resolve()}"]
    if best:
        score = metrics.get("best/val_auroc")
        shown = f" (val/auroc={float(score):.4f})" if score is not None else ""
        lines.append(f"Best checkpoint:  {best}{shown}")
    if checkpoint and checkpoint.last_model_path:
        lines.append(f"Last checkpoint:  {checkpoint.last_model_path}")
    finite = {k: v for k, v in metrics.items() if k.startswith("val/") and math.isfinite(v)}
    if finite:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(finite.items()))
        lines.append(f"Final validation: {shown}")
    if mlflow_logger is not None:
        uri = mlflow_logger._tracking_uri
        lines.append(f"MLflow run:       {mlflow_logger.run_id} in {uri}")
        lines.append(f"Open the MLflow UI: {ui_command(uri)}")
        url = run_url(uri, mlflow_logger.experiment_id, mlflow_logger.run_id)
        lines.append(f"  then browse to {url}")
    print("\n".join(lines), flush=True)
