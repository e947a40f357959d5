"""Training callbacks: checkpoints that are never half-written."""

from __future__ import annotations

from pathlib import Path
from weakref import proxy

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint as _LightningModelCheckpoint

from calcinet.files import atomic_replace


class ModelCheckpoint(_LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, writing each file atomically.

    The checkpoint goes to ``.<name>.tmp`` in the same folder and is then ``os.replace``d onto
    its name, so a run killed while saving leaves the previous ``last.ckpt`` intact, never a
    truncated one that ``resume=true`` would fail to load. ``last.ckpt`` is also refreshed after
    every epoch: Lightning 2.6 refreshes it only when a top-k file was saved in that step, so a
    resume after an epoch without a new best would repeat epochs.
    """

    def _refresh_last(self, trainer: L.Trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

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
