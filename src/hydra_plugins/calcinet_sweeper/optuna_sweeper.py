"""``hydra/sweeper=calcinet_optuna``: calcinet's Hydra sweeper on Optuna's current API.

Hydra imports every module of the ``hydra_plugins`` namespace package when a calcinet command
starts, so this one only declares the config and a thin class; the work (and the optuna import)
lives in :mod:`calcinet.sweeps.sweeper`. Hydra instantiates plugins only from this package,
hence the class here rather than in ``calcinet``. (No ``from __future__ import annotations``:
Hydra's scanner runs the module before it is in ``sys.modules``, where ``dataclasses`` would
look its string annotations up.)
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class CalcinetOptunaSweeperConf:
    """The sweeper's settings (``hydra.sweeper``); ``conf/hparams_search/optuna.yaml`` sets them
    for calcinet-train, and the README's sweep section explains them."""

    _target_: str = "hydra_plugins.calcinet_sweeper.optuna_sweeper.CalcinetOptunaSweeper"
    #: The study's name in its storage: the same name and storage resume the study.
    study_name: str = "calcinet"
    #: null: a journal file <sweep folder>/optuna_journal.log; a file path (journal); or a
    #: database URL (sqlite:///..., postgresql://..., mysql+pymysql://...).
    storage: str | None = None
    #: maximize / minimize (or max / min).
    direction: str = "maximize"
    #: Stop once the study holds this many finished (complete or pruned) trials, counting the
    #: trials of every worker.
    n_trials: int = 20
    #: Trials handed to the launcher at once (run in parallel by a parallel launcher).
    n_jobs: int = 1
    #: An Optuna sampler (``_target_``); with a seed, trial N's sampler is seeded seed + N.
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler"})
    #: An Optuna pruner (``_target_``), or null for no pruning.
    pruner: Any = None
    #: ``{dotted key: sweep}`` in Hydra's grammar: choice(...), range(...), interval(...),
    #: tag(log, interval(...)).
    params: dict[str, Any] | None = None
    #: Seconds between two heartbeats of a running trial.
    heartbeat_interval: int = 60
    #: Seconds without a heartbeat after which a running trial is dead (null: twice the interval).
    grace_period: int | None = None
    #: How often a dead trial's parameters are queued again (null: no limit).
    max_retry: int | None = 3
    #: Failed launches this worker tolerates before it stops with the error: a trial whose
    #: job raised, or a job the launcher lost (a SLURM job timed out or was pre-empted; its
    #: parameters are queued again).
    max_failures: int = 0
    #: Set by the sweeper for each job: the number of the trial it runs.
    trial: int | None = None


ConfigStore.instance().store(group="hydra/sweeper", name="calcinet_optuna",
                             node=CalcinetOptunaSweeperConf, provider="calcinet")


class CalcinetOptunaSweeper(Sweeper):
    """The Hydra face of :class:`calcinet.sweeps.sweeper.OptunaSweep`."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.sweep_impl: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from calcinet.sweeps.sweeper import OptunaSweep

        self.sweep_impl = OptunaSweep(self.settings)
        self.sweep_impl.setup(hydra_context=hydra_context, task_function=task_function,
                              config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.sweep_impl.sweep(arguments)
