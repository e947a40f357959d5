"""``RunRecorder``: everything a training run tells MLflow, in one place.

A run's MLflow record has three moments:

* **start** (:meth:`RunRecorder.start`, in the launching process before ``trainer.fit``): the run
  id goes to ``<run folder>/mlflow_run_id.txt`` (so ``resume=true`` continues the same run), a
  resumed run is marked RUNNING again, a sweep trial or a cross-validation fold is nested under
  its parent, and a new run gets its parameters, tags, class balance and data artifacts. Under
  ``ddp_spawn`` the callback hooks run in the worker processes, so the run must exist before
  they start: this is an explicit call, not a hook.
* **epochs** (the callback hooks, in the process that trains): while training, Lightning's own
  metric calls are held back and each epoch's metrics reach MLflow only once that epoch's
  ``last.ckpt`` is written (:class:`calcinet.training.callbacks.ModelCheckpoint` commits them);
  an epoch whose checkpoint was written but whose metrics were not (a kill between the two) is
  committed when the run resumes.
* **finish** (:meth:`RunRecorder.finish`): the resolved config, the Hydra config, the best
  checkpoint and the best score (``best/<monitor.metric>``), also reported to the parent run;
  a sweep trial's end state (COMPLETE, PRUNED, FAIL) as the tag ``calcinet.trial_state``.

Every MLflow call after the start warns instead of stopping training (see
``calcinet.tracking.ResilientMLFlowLogger``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import MLFlowLogger

from calcinet import __version__
from calcinet.data.sources import RecordSource
from calcinet.tracking import (
    RUN_ID_FILE,
    TRIAL_STATE_TAG,
    parent_run,
    report_to_parent,
)
from calcinet.training.callbacks import ModelCheckpoint
from calcinet.training.checkpoints import Saved


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are kept as one value."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        flat.update(_flatten(value, name) if isinstance(value, dict) and value else {name: value})
    return flat


class RunRecorder(Callback):
    """The MLflow side of one training run (see the module docstring).

    Args:
        logger: the run's MLflow logger (rank 0 only; other ranks have no recorder).
        output_dir: the run folder.
        resume_run_id: the MLflow run being continued (``resume=true``), else None.
        parent_key: the folder that groups this run with others (a sweep, the folds of a
            cross-validation), else None.
    """

    def __init__(self, logger: MLFlowLogger, output_dir: Path, resume_run_id: str | None = None,
                 parent_key: str | None = None) -> None:
        self.logger = logger
        self.output_dir = Path(output_dir)
        self.resume_run_id = resume_run_id
        self.parent_key = parent_key
        self.parent_id: str | None = None

    # -- the launching process --

    @property
    def run_id(self) -> str:
        return self.logger.run_id

    def _safe(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        return self.logger.guarded(what, call, *args, **kwargs)

    def start(self, resolved: dict[str, Any], source: RecordSource, run_info: dict[str, Any],
              train_counts: dict[int, int]) -> dict[str, Any]:
        """Open (or reopen) the run and describe it; returns what the checkpoints should store
        about it (run id, tracking URI, experiment id).

        Raises:
            Exception: whatever MLflow raises while the run is created (a store that cannot be
                written): before training starts, failing is better than training unlogged.
        """
        client, run_id = self.logger.experiment, self.logger.run_id
        (self.output_dir / RUN_ID_FILE).write_text(run_id + "\n")
        if self.resume_run_id:  # KILLED after a SIGTERM, still RUNNING after a SIGKILL
            client.update_run(run_id, status="RUNNING")
        elif self.parent_key:
            self.parent_id = parent_run(client, self.logger.experiment_id, self.parent_key,
                                        name=Path(self.parent_key).name)
            client.set_tag(run_id, "mlflow.parentRunId", self.parent_id)
        if self.resume_run_id and self.parent_key:
            self.parent_id = client.get_run(run_id).data.tags.get("mlflow.parentRunId")
        if not self.resume_run_id:  # a resumed run has its parameters already
            self.logger.log_hyperparams(_flatten(resolved))
        tags = {
            "calcinet.version": __version__,
            "calcinet.config_hash": run_info["config_hash"],
            "calcinet.data_fingerprint": run_info["data_fingerprint"],
            "calcinet.data_source": source.kind,
            "calcinet.debug_config": run_info.get("debug") or "none",
            "calcinet.output_dir": str(self.output_dir.resolve()),
        }
        commit = run_info.get("git_commit")  # found once, by training.run.run_info
        if commit:
            tags["mlflow.source.git.commit"] = commit
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        if not self.resume_run_id:
            client.log_metric(run_id, "data/train_malignant_fraction",
                              train_counts[1] / max(1, train_counts[0] + train_counts[1]))
        for path in source.write_artifacts(self.output_dir / "artifacts"):
            self._safe("uploading data artifacts", client.log_artifact, run_id, str(path), "data")
        return {"mlflow_run_id": run_id, "mlflow_tracking_uri": self.logger._tracking_uri,
                "mlflow_experiment_id": self.logger.experiment_id}

    def tag(self, tags: dict[str, str]) -> None:
        """Set tags on the run (a sweep trial's study, number and state)."""
        for key, value in tags.items():
            self._safe(f"tagging {key}", self.logger.experiment.set_tag, self.run_id, key, value)

    def finish(self, best: Saved | None, best_name: str, mode: str,
               trial_state: str | None = None) -> None:
        """Upload the config, the Hydra config and the best checkpoint; log ``best_name`` (the
        best checkpoint's stored score) here and on the parent run.

        ``trial_state`` (a sweep trial's end: COMPLETE, PRUNED or FAIL) becomes the tag
        ``calcinet.trial_state``; only a COMPLETE trial competes for the parent's best, as only
        complete trials count in Optuna's ``best_trial`` (a pruned trial's score is that of a
        run stopped early).
        """
        client, run_id = self.logger.experiment, self.logger.run_id
        if trial_state is not None:
            self.tag({TRIAL_STATE_TAG: trial_state})
        self._safe("uploading the config", client.log_artifact, run_id,
                   str(self.output_dir / "config.yaml"))
        hydra_dir = self.output_dir / ".hydra"
        if hydra_dir.is_dir():
            self._safe("uploading the Hydra config", client.log_artifacts, run_id,
                       str(hydra_dir), "hydra")
        if best is None:
            return
        self._safe("uploading the best checkpoint", client.log_artifact, run_id, str(best.path),
                   "checkpoints")
        if best.score is None:
            return
        self._safe(f"logging {best_name}", client.log_metric, run_id, best_name, best.score)
        if self.parent_id is not None and trial_state in (None, "COMPLETE"):
            self._safe("updating the parent run", report_to_parent, client, self.parent_id,
                       run_id, best_name, best.score, str(self.output_dir), mode)

    # -- the training process(es): epoch metrics committed with their checkpoint --

    @staticmethod
    def _holders(trainer: L.Trainer) -> list[Any]:
        # The trainer's own logger objects: under ddp_spawn they are the workers' copies.
        return [lg for lg in trainer.loggers if hasattr(lg, "commit")]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        checkpoint = trainer.checkpoint_callback
        committed = checkpoint.committed if isinstance(checkpoint, ModelCheckpoint) else None
        for logger in self._holders(trainer):
            logger.hold(True)
            if committed is not None and trainer.is_global_zero and \
                    committed["epoch"] not in logger.committed_epochs():
                # Killed after the checkpoint was written, before its metrics were logged.
                logger.commit(committed["metrics"], committed["step"])

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for logger in self._holders(trainer):
            logger.hold(False)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        self.on_train_end(trainer, pl_module)
