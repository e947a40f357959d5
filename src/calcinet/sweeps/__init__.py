"""Hyper-parameter sweeps on Optuna: ``calcinet-train -m hparams_search=optuna``.

No released Hydra sweeper supports Optuna >= 4 (hydra-optuna-sweeper 1.3.0 pins ``optuna<3``),
so calcinet ships its own small one: ``hydra_plugins.calcinet_sweeper`` (Hydra finds it in the
``hydra_plugins`` namespace package) hands the work to :class:`calcinet.sweeps.sweeper.
OptunaSweep`, which asks the study for trials and hands them to Hydra's launcher (the basic one,
or submitit for SLURM and local processes), so which launcher runs the trials stays Hydra's
choice.

* :mod:`~calcinet.sweeps.space`: the search space in Hydra's sweep grammar as Optuna
  distributions;
* :mod:`~calcinet.sweeps.storage`: journal file or database storage, heartbeats and retrying
  the trials of dead workers;
* :mod:`~calcinet.sweeps.sweeper`: the ask / launch / close loop of one worker;
* :mod:`~calcinet.sweeps.trial`: the training run's side (pruning, telling the study its end).
"""
