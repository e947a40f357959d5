"""Training callbacks: checkpoints that are never half-written and always mean what they say, and
early stopping that leaves a warm-up unjudged."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any
from weakref import proxy

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping as _LightningEarlyStopping
from lightning.pytorch.callbacks import ModelCheckpoint as _LightningModelCheckpoint

from calcinet.config import ConfigError
from calcinet.files import atomic_replace, temporary_beside
from calcinet.training.checkpoints import BEST, LAST, Saved, best_saved


def checkpoint_filename(metric: str) -> str:
    """``epoch011-val_auroc0.9444``: no ``=`` (Hydra's override grammar) and no ``/``."""
    return f"epoch{{epoch:03d}}-{metric.replace('/', '_')}{{{metric}:.4f}}"


class ModelCheckpoint(_LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, with three promises kept in the run folder:

    - every file is written to ``.<name>.tmp`` beside its name and renamed, so a kill while
      saving leaves the previous file intact, never a truncated one;
    - ``last.ckpt`` is the last *finished* epoch, written at the end of every training epoch
      whatever the validation interval (Lightning writes it only when it saves a top-k file);
      it is always overwritten, never versioned as ``last-v1.ckpt`` in a copied folder;
    - ``best.ckpt`` is the best checkpoint in the folder by the score stored in the files
      (checked against the folder at the start, so a moved or resumed run never demotes it);
    - an epoch's metrics reach the loggers that hold them back (calcinet's MLflow logger under
      :class:`~calcinet.training.recorder.RunRecorder`) only after that epoch's ``last.ckpt``
      is written; the checkpoint keeps them too (``committed``), so a run killed between the
      two commits them when it resumes. No epoch is ever logged that the checkpoints do not
      cover, and none twice.

    ``filename`` defaults to :func:`checkpoint_filename` of the monitored metric.
    """

    def __init__(self, *args: Any, filename: str | None = None, save_last: bool = True,
                 **kwargs: Any) -> None:
        kwargs.setdefault("enable_version_counter", False)
        super().__init__(*args, filename=filename, save_last=False, **kwargs)
        if filename is None and self.monitor:
            self.filename = checkpoint_filename(self.monitor)
        self.keep_last = bool(save_last)
        self.best_on_disk: Saved | None = None
        self.validated_epoch: int | None = None
        self.epoch_lr: dict[str, float] = {}
        #: The last committed epoch: ``{"epoch", "step", "metrics"}`` (kept in checkpoints).
        self.committed: dict[str, Any] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self.dirpath and Path(self.dirpath).is_dir():
            self.best_on_disk = best_saved(Path(self.dirpath))

    # -- metrics committed with the checkpoint --

    @staticmethod
    def _holders(trainer: L.Trainer) -> list[Any]:
        """Loggers holding Lightning's metric calls back (calcinet's MLflow logger while
        :class:`calcinet.training.recorder.RunRecorder` trains): they get each epoch here."""
        return [lg for lg in trainer.loggers if getattr(lg, "holding", False)]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The learning rate at the start of the epoch, as Lightning's LearningRateMonitor.
        self.epoch_lr = {}
        for optimizer in trainer.optimizers:
            for index, group in enumerate(optimizer.param_groups):
                name = f"lr-{type(optimizer).__name__}" + (f"/pg{index + 1}" if index else "")
                self.epoch_lr[name] = float(group["lr"])

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not trainer.sanity_checking:
            self.validated_epoch = trainer.current_epoch

    def epoch_metrics(self, trainer: L.Trainer) -> dict[str, float]:
        """This epoch's metrics: the training ones, the validation ones when it validated (with
        ``check_val_every_n_epoch`` > 1 some do not), its learning rates and the epoch."""
        validated = self.validated_epoch == trainer.current_epoch
        metrics = {key: float(value) for key, value in trainer.callback_metrics.items()
                   if not key.endswith("_step") and (validated or not key.startswith("val/"))}
        return {**metrics, **self.epoch_lr, "epoch": float(trainer.current_epoch)}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # Lightning's own skip rule also skips a step that saved a top-k file; last.ckpt is
        # another file and is written every epoch.
        if not self.keep_last or trainer.fast_dev_run or trainer.sanity_checking:
            return
        self.committed = {"epoch": trainer.current_epoch, "step": trainer.global_step,
                          "metrics": self.epoch_metrics(trainer)}
        path = str(Path(self.dirpath) / LAST)
        self._save_checkpoint(trainer, path)  # the checkpoint holds self.committed ...
        self.last_model_path = path
        if trainer.is_global_zero:  # ... before the loggers get it
            for logger in self._holders(trainer):
                logger.commit(self.committed["metrics"], self.committed["step"])

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "committed": self.committed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.committed = state_dict.get("committed")
        super().load_state_dict(state_dict)

    def _update_best_and_save(self, current: Any, trainer: L.Trainer,
                              monitor_candidates: dict[str, Any]) -> None:
        super()._update_best_and_save(current, trainer, monitor_candidates)
        saved = Saved(Path(self.best_model_path), int(monitor_candidates["epoch"]),
                      int(monitor_candidates["step"]), str(self.monitor), self.mode,
                      float(self.best_model_score))
        if saved.better_than(self.best_on_disk):
            self.best_on_disk = saved
            if trainer.is_global_zero:
                _link(saved.path, Path(self.dirpath) / BEST)
        trainer.strategy.barrier("calcinet_best_checkpoint")

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        final = Path(filepath)
        temporary = final.with_name(f".{final.name}.tmp")
        trainer.save_checkpoint(str(temporary), self.save_weights_only)
        if trainer.is_global_zero and temporary.exists():
            atomic_replace(temporary, final)
        trainer.strategy.barrier("calcinet_atomic_checkpoint")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))


class EarlyStopping(_LightningEarlyStopping):
    """Lightning's ``EarlyStopping`` that leaves the first ``start_from_epoch`` epochs unjudged
    (Keras's ``EarlyStopping(start_from_epoch=...)``; Lightning has no such argument).

    Lightning's own guard, ``Trainer(min_epochs=...)``, holds back every stop request (a sweep's
    pruning too) and still counts the held-back epochs against ``patience``, so the run stops at
    ``min_epochs`` even when it has improved since (Lightning issue #19966). Here the epochs
    before ``start_from_epoch`` neither stop the run nor set the best score: patience starts
    counting after them. A mix of phantom renderer families sits near chance for its first 3-7
    epochs before it learns (README, "How the default came to mix two families"), and a
    patience counted from epoch 1 ended such a run inside that plateau.

    Args:
        start_from_epoch: epochs trained before the monitored metric is judged (0: Lightning's
            behaviour).
        *args, **kwargs: those of ``lightning.pytorch.callbacks.EarlyStopping``.

    Raises:
        calcinet.config.ConfigError: (a ``ValueError``) ``start_from_epoch`` is not a whole
            number >= 0.
    """

    def __init__(self, *args: Any, start_from_epoch: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        start = start_from_epoch
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ConfigError(f"callbacks.early_stopping.start_from_epoch={start!r}: expected a "
                              "whole number of epochs, 0 or more")
        self.start_from_epoch = start

    def _judged(self, trainer: L.Trainer) -> bool:
        return trainer.current_epoch + 1 > self.start_from_epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._judged(trainer):
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._judged(trainer):
            super().on_validation_end(trainer, pl_module)


def _link(source: Path, target: Path) -> None:
    """``target`` becomes the same file as ``source`` (a hard link, else a copy), atomically."""
    with temporary_beside(target, ".ckpt") as temporary:
        temporary.unlink(missing_ok=True)
        try:
            os.link(source, temporary)
        except OSError:  # a file system without hard links
            shutil.copyfile(source, temporary)
        atomic_replace(temporary, target)
