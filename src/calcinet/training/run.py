"""``build(cfg)``: the parts a composed config describes; ``train(cfg)``: the recipe that fits
them and says what came out.

``train`` reads top to bottom: check the config, build (unusable splits are refused there,
before the model), open the MLflow run, fit, pick the best checkpoint from the folder, test,
record and report. Everything MLflow hears goes through
:class:`calcinet.training.recorder.RunRecorder`; what the user reads at the end is
:mod:`calcinet.training.report`; exit statuses are the console scripts' business
(:mod:`calcinet.cli.train`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ProgressBar
from lightning.pytorch.loggers import Logger, MLFlowLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

import calcinet
from calcinet import __version__, progress
from calcinet.config import ConfigError, validate_train_config
from calcinet.data.datamodule import CalciDataModule
from calcinet.data.splits import PURPOSES, SPLITS, split_problems, with_split_problems
from calcinet.sweeps.trial import SweepTrial
from calcinet.tracking import RUN_ID_FILE, git_commit
from calcinet.training.checkpoints import BEST, best_saved, newest_last
from calcinet.training.recorder import RunRecorder
from calcinet.training.report import report_run, report_stopped
from calcinet.training.signals import (
    SigtermFlagOnly,
    TrainingStopped,
    relay_sigterm,
    spawns_workers,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Parts:
    """What one training run is made of (see :func:`build`)."""

    cfg: DictConfig
    output_dir: Path
    #: Where ``checkpoints/`` of the run are written.
    checkpoints: Path
    datamodule: CalciDataModule
    module: L.LightningModule
    trainer: L.Trainer
    #: The MLflow side of the run; None without an MLflow logger and on ranks other than 0.
    recorder: RunRecorder | None
    #: The checkpoint ``trainer.fit`` starts from (``ckpt_path``, or ``last.ckpt`` on resume).
    ckpt_path: str | None


def build(cfg: DictConfig, parent_key: str | None = None, callbacks: Sequence[Callback] = (),
          **trainer_options: Any) -> Parts:
    """Instantiate the data, model, loggers, callbacks and trainer that ``cfg`` describes.

    Nothing is trained and no MLflow run is opened yet. ``callbacks`` are added to the
    configured ones and ``trainer_options`` override ``cfg.trainer`` (benchmarks time epochs
    this way). ``parent_key`` nests the run under a parent MLflow run (a Hydra multirun's
    trials are nested under their sweep folder without it).

    Raises:
        ConfigError: a train or validation split without both classes (before anything else
            is built), or a config value that cannot work.
        DataValidationError, TrackingUnreachableError: from the parts (wrapped in
            Hydra's ``InstantiationException``; :func:`calcinet.cli.user_error` unwraps them).
    """
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = checkpoint_dir(cfg)
    ckpt_path, resume_run_id = resume_state(cfg, output_dir, checkpoints)
    # The loggers first: a tracking store that cannot be used is known in seconds, before the
    # data are read (they open no run until the recorder starts one).
    loggers: list[Logger] = [
        instantiate(node, **({"run_id": resume_run_id} if name == "mlflow" and resume_run_id
                             else {}))
        for name, node in (cfg.get("logger") or {}).items() if node is not None
    ]
    datamodule: CalciDataModule = instantiate(cfg.data)
    check_training_splits(datamodule)
    module = instantiate(cfg.model, loss=loss_options(cfg, datamodule))
    if cfg.trainer.get("compile"):
        # In place (nn.Module.compile): the state dict keeps its keys, so checkpoints, resume
        # and export see the plain network.
        module.network.compile()
    mlflow = next((lg for lg in loggers if isinstance(lg, MLFlowLogger)), None)
    recorder = None
    if mlflow is not None and rank_zero_only.rank == 0:
        recorder = RunRecorder(mlflow, output_dir, resume_run_id, parent_key or _sweep_key())
    configured = instantiate_all(cfg.get("callbacks"))
    bars = progress.shown()  # Lightning's bars as calcinet's: a terminal only, never quiet
    if not bars:
        configured = [c for c in configured if not isinstance(c, ProgressBar)]
        trainer_options = {"enable_progress_bar": False, **trainer_options}
    if progress.quiet():
        trainer_options = {"enable_model_summary": False, **trainer_options}
    everything = [*configured, *callbacks,
                  SigtermFlagOnly(),  # SIGTERM under DDP without a collective in the handler
                  *([recorder] if recorder else [])]
    trainer: L.Trainer = instantiate(lightning_trainer_config(cfg), callbacks=everything,
                                     logger=loggers,
                                     **{**_trainer_overrides(cfg), **trainer_options})
    return Parts(cfg, output_dir, checkpoints, datamodule, module, trainer, recorder, ckpt_path)


#: Keys of ``cfg.trainer`` that calcinet applies itself (not Lightning ``Trainer`` arguments).
CALCINET_TRAINER_KEYS = ("compile",)


def lightning_trainer_config(cfg: DictConfig) -> dict[str, Any]:
    """``cfg.trainer`` (resolved) without calcinet's own keys: what ``instantiate`` turns into a
    Lightning Trainer."""
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    return {key: value for key, value in trainer.items() if key not in CALCINET_TRAINER_KEYS}


def train(cfg: DictConfig, parent_key: str | None = None) -> dict[str, float]:
    """Train the model ``cfg`` describes; return the final callback metrics as floats, with
    ``best/<monitor.metric>`` read from the best checkpoint in the folder.

    Everything the run writes lives in ``cfg.paths.output_dir``: the resolved config,
    ``checkpoints/`` (``best.ckpt``, the named best, ``last.ckpt``), ``mlflow_run_id.txt``, logs
    and artifacts. ``resume=true`` continues the run of that folder. A trial of calcinet's
    Optuna sweeper also reports to its study (pruning) and tells it how it ended
    (:class:`calcinet.sweeps.trial.SweepTrial`).

    Raises:
        ConfigError: the config, or a train/validation split without both classes.
        TrainingStopped: a SIGTERM stopped the fit (``last.ckpt`` holds the last epoch).
    """
    validate_train_config(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    trial = SweepTrial.current(cfg)  # the Optuna trial this run is, under calcinet's sweeper
    parts = build(cfg, parent_key, trial.callbacks() if trial else ())
    resolved = OmegaConf.to_container(cfg, resolve=True)
    is_zero = rank_zero_only.rank == 0
    if is_zero:
        (parts.output_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    parts.module.run_info = run_info(cfg, resolved, parts)
    if parts.recorder is not None:
        parts.module.run_info.update(parts.recorder.start(
            resolved, parts.datamodule.source, parts.module.run_info,
            parts.datamodule.class_counts("train")))
    if trial is not None:
        trial.started(parts.recorder)

    trainer = parts.trainer
    try:
        with relay_sigterm(trainer):
            trainer.fit(parts.module, datamodule=parts.datamodule, ckpt_path=parts.ckpt_path)
    except SIGTERMException:
        if is_zero:  # under ddp_spawn this process did not train: its trainer knows no epoch
            report_stopped(parts.output_dir, parts.checkpoints,
                           None if spawns_workers(trainer) else trainer.current_epoch,
                           sweep_trial=_sweep_key() is not None)
        raise TrainingStopped(str(parts.output_dir)) from None

    # The best checkpoint by the score stored in the files (after ddp_spawn, a resume or a
    # moved folder, the callback's memory may know less); best.ckpt is its copy.
    saved = best_saved(parts.checkpoints) if parts.checkpoints.is_dir() else None
    best = saved
    if saved is not None and (parts.checkpoints / BEST).is_file():
        best = dataclasses.replace(saved, path=parts.checkpoints / BEST)
    if cfg.get("test") and trainer.state.finished:
        trainer.test(parts.module, datamodule=parts.datamodule,
                     ckpt_path=str(best.path) if best else None)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if saved is not None and saved.score is not None:
        metrics[best_metric(cfg)] = saved.score
    trial_state = trial.tell(trial.outcome(), metrics.get(best_metric(cfg))) if trial else None
    if parts.recorder is not None:
        parts.recorder.finish(saved, best_metric(cfg), str(cfg.monitor.mode), trial_state)
    if is_zero:
        recorder = parts.recorder
        mlflow = (recorder.logger._tracking_uri, recorder.logger.experiment_id,
                  recorder.run_id) if recorder is not None else None
        report_run(parts.output_dir, parts.checkpoints, best, metrics, mlflow,
                   data_overrides(cfg))
    return metrics


def data_report(cfg: DictConfig) -> tuple[str, bool]:
    """``data.validate_only=true``: the source's validation report plus the problems of the
    train and validation splits (of the fold, under k-fold), and whether all is usable."""
    datamodule: CalciDataModule = instantiate(cfg.data)
    counts = {split: datamodule.class_counts(split) for split in PURPOSES["training"]}
    problems = split_problems(counts, PURPOSES["training"])
    report = with_split_problems(datamodule.source.validation_report(), problems,
                                 "not usable for training: ")
    return report, not (datamodule.source.problems or problems)


# -- the pieces --

#: Set by cross-validation for each fold; data_overrides() writes them from the config.
FOLD_KEYS = ("data.num_folds", "data.fold")


def data_overrides(cfg: DictConfig) -> list[str]:
    """The run's data overrides (``data=manifest``, ``data.manifest=...``, the fold), so that the
    printed evaluate command reads the data the model was trained on, as the user typed them."""
    words = []
    if HydraConfig.initialized():
        for word in HydraConfig.get().overrides.task:
            key = word.split("=", 1)[0].lstrip("+~")
            if (key == "data" or key.startswith("data.")) and key not in FOLD_KEYS \
                    and key != "data.validate_only":
                words.append(word)
    if cfg.data.get("num_folds") is not None:
        words += [f"data.num_folds={cfg.data.num_folds}", f"data.fold={cfg.data.fold}"]
    return words


def best_metric(cfg: DictConfig) -> str:
    """The name of the run's best score: ``best/val_auroc`` for ``monitor.metric=val/auroc``."""
    return "best/" + str(cfg.monitor.metric).replace("/", "_")


def checkpoint_dir(cfg: DictConfig) -> Path:
    """``callbacks.model_checkpoint.dirpath``, else ``<run folder>/checkpoints``."""
    dirpath = OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath")
    return Path(dirpath) if dirpath else Path(cfg.paths.output_dir) / "checkpoints"


def instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a config group whose value is not null."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node is not None]


def resume_state(cfg: DictConfig, output_dir: Path, checkpoints: Path
                 ) -> tuple[str | None, str | None]:
    """``(checkpoint, MLflow run id)`` to continue from: the newest ``last*.ckpt`` and
    ``mlflow_run_id.txt`` of the run folder when ``resume=true``, else ``(ckpt_path, None)``."""
    if not cfg.get("resume"):
        return cfg.get("ckpt_path"), None
    last = newest_last(checkpoints) if checkpoints.is_dir() else None
    run_file = output_dir / RUN_ID_FILE
    run_id = run_file.read_text().strip() or None if run_file.is_file() else None
    if cfg.get("ckpt_path"):
        return cfg.ckpt_path, run_id
    if last is not None:
        log.info("resume=true: continuing from %s (MLflow run %s)", last, run_id)
        return str(last), run_id
    message = (f"resume=true but {checkpoints} holds no last.ckpt: starting from scratch in "
               f"{output_dir} (pass the interrupted run's folder as hydra.run.dir=...)")
    log.warning(message)
    return None, run_id


def check_training_splits(datamodule: CalciDataModule) -> None:
    """Refuse, before the first epoch, a train or validation split (of this fold) without both
    classes: the loss, the thresholds and AUROC need both.

    Raises:
        ConfigError: naming the split (and fold) and its class counts.
    """
    where = (f" of fold {datamodule.fold} (data.num_folds={datamodule.num_folds})"
             if datamodule.num_folds is not None else "")
    counts = {split: datamodule.class_counts(split) for split in PURPOSES["training"]}
    problems = split_problems(counts, PURPOSES["training"], where)
    if problems:
        raise ConfigError("; ".join(problems))


def loss_options(cfg: DictConfig, datamodule: CalciDataModule) -> dict[str, Any]:
    """``model.loss`` with ``pos_weight: auto`` replaced by benign/malignant of the train split."""
    loss = OmegaConf.to_container(cfg.model.get("loss") or {}, resolve=True)
    if loss.get("pos_weight") == "auto":
        counts = datamodule.class_counts("train")
        loss["pos_weight"] = counts[0] / max(1, counts[1])
        log.info("pos_weight=auto -> %.3f (benign %d / malignant %d)", loss["pos_weight"],
                 counts[0], counts[1])
    return loss


def run_info(cfg: DictConfig, resolved: dict[str, Any], parts: Parts) -> dict[str, Any]:
    """What every checkpoint of the run stores about it (``checkpoint["calcinet"]``)."""
    return {
        "monitor": {"metric": str(cfg.monitor.metric), "mode": str(cfg.monitor.mode)},
        "calcinet_version": __version__,
        "config_hash": hashlib.sha256(
            json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:16],
        "data_fingerprint": parts.datamodule.source.fingerprint(),
        "output_dir": str(parts.output_dir.resolve()),
        # Read by calcinet-export: the model card and the registration policy.
        "debug": _debug_choice(),
        "data": {"kind": parts.datamodule.source.kind,
                 "describe": parts.datamodule.source.describe(),
                 "class_counts": {split: parts.datamodule.class_counts(split)
                                  for split in SPLITS}},
        "git_commit": git_commit(Path(calcinet.__file__).parent)
        or git_commit(resolved["paths"]["root_dir"]),
    }


def _debug_choice() -> str | None:
    """The ``debug=`` option the run was composed with (``smoke``), else None."""
    if not HydraConfig.initialized():
        return None
    choice = HydraConfig.get().runtime.choices.get("debug")
    return None if choice in (None, "null") else str(choice)


def _sweep_key() -> str | None:
    """The sweep folder when this run is a trial of a Hydra multirun, else None."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return str(Path(hydra_cfg.sweep.dir).resolve())


def _trainer_overrides(cfg: DictConfig) -> dict[str, Any]:
    """Processes started by torchrun already exist: use plain DDP there, never spawn more."""
    strategy = cfg.trainer.get("strategy")
    under_torchrun = "TORCHELASTIC_RUN_ID" in os.environ and "LOCAL_RANK" in os.environ
    if under_torchrun and isinstance(strategy, str) and strategy.startswith("ddp"):
        return {"strategy": "ddp"}
    return {}
