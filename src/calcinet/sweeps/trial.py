"""The trial side of a sweep: a training run that is one Optuna trial.

calcinet's sweeper launches every trial with ``hydra.sweeper.trial=<number>``; the training run
finds its trial through the study's storage (study name and storage from ``hydra.sweeper``),
reports the monitored metric after every validation so that the pruner can stop it early, and
tells the study how it ended: COMPLETE with its best score, or PRUNED. Its MLflow run carries the
same facts (tags ``calcinet.optuna_study``, ``calcinet.optuna_trial``, ``calcinet.trial_state``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from omegaconf import DictConfig

from calcinet.lazy import lazy_classes
from calcinet.tracking import TRIAL_STATE_TAG

log = logging.getLogger(__name__)


def _define_graceful_pruning() -> type:
    """Build :class:`GracefulPruning` on first use (optuna and Lightning import slowly)."""
    from optuna_integration.pytorch_lightning.pytorch_lightning import (
        _INTERMEDIATE_VALUE,
        PyTorchLightningPruningCallback,
    )

    class GracefulPruning(PyTorchLightningPruningCallback):
        """Optuna's Lightning pruning callback (``optuna_integration``), always stopping
        gracefully.

        On one process Optuna's callback raises ``TrialPruned`` from inside ``Trainer.fit``,
        which Lightning handles as a crash: the epoch's checkpoint and metric commit are skipped
        and the MLflow run is closed FAILED. Its distributed path instead sets
        ``trainer.should_stop`` on every rank and records the pruning in the trial's system
        attributes, and that is what a calcinet run needs on one process as much as under
        ``ddp_spawn``: the run ends like an early-stopped one, whole, and :func:`pruned_epoch`
        reads the decision back from the storage. That path's guard (an RDB storage under DDP)
        exists because Optuna's RDB cache hides other processes' writes; a journal storage is
        read afresh by every process.
        """

        def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
            self.is_ddp_backend = True  # always the graceful path
            if trainer.is_global_zero:
                self._trial.storage.set_trial_system_attr(self._trial._trial_id,
                                                          _INTERMEDIATE_VALUE, {})

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            # The last epoch is never pruned: the trial has trained to the end and its score
            # is told to the study as it is (a pruned trial could not become the best).
            last = trainer.max_epochs is not None and trainer.max_epochs > 0 and \
                trainer.current_epoch + 1 >= trainer.max_epochs
            if not last:
                super().on_validation_end(trainer, pl_module)

    return GracefulPruning


# Built on first use, under this module's name, so that ddp_spawn can pickle it.
__getattr__ = lazy_classes(__name__, {"GracefulPruning": _define_graceful_pruning})


def pruned_epoch(trial: Any) -> int | None:
    """The epoch at which the pruning callback stopped ``trial``, read from its storage."""
    from optuna_integration.pytorch_lightning.pytorch_lightning import _EPOCH_KEY, _PRUNED_KEY

    attrs = trial.storage.get_trial_system_attrs(trial._trial_id)
    return int(attrs.get(_EPOCH_KEY, -1)) if attrs.get(_PRUNED_KEY) else None


class SweepTrial:
    """The Optuna trial that this training run is (see the module docstring).

    Args:
        trial: the ``optuna.Trial``, attached to a study whose pruner is the sweep's.
        monitor: the metric reported for pruning (``monitor.metric``, e.g. ``val/auroc``).
        prune: whether the sweep prunes (``hydra.sweeper.pruner`` is not null).
    """

    def __init__(self, trial: Any, monitor: str, prune: bool) -> None:
        self.trial = trial
        self.monitor = monitor
        self.prune = prune

    @property
    def number(self) -> int:
        return int(self.trial.number)

    @classmethod
    def current(cls, cfg: DictConfig) -> SweepTrial | None:
        """This run's trial when calcinet's sweeper launched it, else None.

        Raises:
            ConfigError: the study named in ``hydra.sweeper`` is not in its storage.
        """
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        if not HydraConfig.initialized():
            return None
        hydra_cfg = HydraConfig.get()
        sweeper = hydra_cfg.sweeper
        number = sweeper.get("trial")
        if number is None or "calcinet_sweeper" not in str(sweeper.get("_target_", "")):
            return None
        import optuna
        from hydra.utils import instantiate

        from calcinet.sweeps.storage import StudySettings, open_storage, open_study

        settings = StudySettings.from_sweeper(OmegaConf.to_container(sweeper, resolve=True),
                                              hydra_cfg.sweep.dir)
        storage = open_storage(settings, heartbeats=False)  # the sweeper beats for its trials
        pruner = instantiate(sweeper.pruner) if sweeper.get("pruner") else None
        # No parameter is sampled here (the sweeper did): any sampler will do.
        study = open_study(settings, storage, optuna.samplers.RandomSampler(), pruner,
                           create=False)
        trial_id = storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name(settings.study_name), int(number))
        return cls(optuna.Trial(study, trial_id), str(cfg.monitor.metric), pruner is not None)

    def callbacks(self) -> list[Any]:
        """The Lightning callbacks the trial adds to the run (pruning, when the sweep prunes)."""
        return [__getattr__("GracefulPruning")(self.trial, self.monitor)] if self.prune else []

    def started(self, recorder: Any | None) -> None:
        """Link the trial and the MLflow run both ways, once the run exists."""
        if recorder is None:
            return
        self.trial.set_user_attr("mlflow_run_id", recorder.run_id)
        self.trial.set_user_attr("mlflow_tracking_uri", recorder.logger._tracking_uri)
        self.trial.set_user_attr("output_dir", str(recorder.output_dir.resolve()))
        recorder.tag({"calcinet.optuna_study": self.trial.study.study_name,
                      "calcinet.optuna_trial": str(self.number), TRIAL_STATE_TAG: "RUNNING"})

    def outcome(self) -> str:
        """``"PRUNED"`` when the pruner stopped the run, else ``"COMPLETE"``."""
        epoch = pruned_epoch(self.trial) if self.prune else None
        if epoch is None:
            return "COMPLETE"
        pruner = type(self.trial.study.pruner).__name__
        log.info(f"Optuna's {pruner} stopped trial {self.number} after epoch {epoch} on its "
                 f"{self.monitor}.")
        return "PRUNED"

    def tell(self, outcome: str, score: float | None) -> str:
        """Finish the trial in the study: PRUNED, COMPLETE with ``score`` (the best
        ``monitor.metric``), or FAIL when there is no finite score. Returns the state the trial
        ended in (FAIL when a sweep had already given it up as dead)."""
        from optuna.trial import TrialState

        study = self.trial.study
        frozen = self.trial.storage.get_trial(self.trial._trial_id)
        if frozen.state.is_finished():
            log.warning("trial %d was already %s in the study (its sweep gave it up); its "
                        "result stays in MLflow only", self.number, frozen.state.name)
            return frozen.state.name
        if outcome == "PRUNED":
            study.tell(self.number, state=TrialState.PRUNED)
        elif score is not None and math.isfinite(score):
            study.tell(self.number, score)
        else:
            study.tell(self.number, state=TrialState.FAIL)
            return "FAIL"
        return outcome
