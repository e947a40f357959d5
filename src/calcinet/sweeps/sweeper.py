"""One sweep worker: ask the study for trials, hand them to Hydra's launcher, close them.

Every worker of a study (a rerun, a second process on the same machine, a node of a cluster)
runs the same loop against the shared storage, so the study, not a worker, holds the state:

1. with the sweep folder's lock held (``.optuna_ask.lock``, so that workers on one machine or a
   shared file system count and ask one at a time): fail the trials whose worker went silent
   (heartbeats; their parameters are queued again, see :mod:`calcinet.sweeps.storage`), count
   the finished (COMPLETE or PRUNED) and RUNNING trials of every worker, and ask for as many new
   trials as fit under ``n_trials`` (at most ``n_jobs``; a queued retry comes first);
2. launch them with Hydra's launcher (one job per trial, in ``<sweep folder>/trial_<number>``),
   recording a heartbeat for each while it runs;
3. close what the trial itself did not (a calcinet training run tells the study COMPLETE or
   PRUNED, :mod:`calcinet.sweeps.trial`): a job that returned a number without telling the study
   completes with it, one that raised fails, and a job the launcher lost (a SLURM time-out) is
   failed and queued again.

The worker stops when the study holds ``n_trials`` finished trials; while other workers' trials
would make up the rest, it waits for them (a dead one's retry may fall to it). A sampler with a
``seed`` is made afresh for every trial with seed + trial number: a sweep run by one worker
without interruption is repeated exactly, and parallel workers never draw the same random
values for two trials.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from calcinet.cli import fail
from calcinet.config import ConfigError
from calcinet.files import atomic_write
from calcinet.sweeps import space
from calcinet.sweeps.storage import RetryStaleTrial, StudySettings, open_storage, open_study

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"
LOCK_FILE = ".optuna_ask.lock"


class Heartbeats:
    """Record a heartbeat for each of this worker's open trials every ``interval`` seconds, in
    a background thread, from entering until leaving the ``with`` block.

    Optuna's own heartbeat thread (``optuna.storages._heartbeat``, private) beats for one trial
    inside ``Study.optimize``; a sweep worker holds a batch of trials while Hydra's launcher
    runs them, so it beats for all of them here through the storage's public
    ``record_heartbeat``.
    """

    def __init__(self, storage: Any, trial_ids: list[int], interval: float) -> None:
        self.storage = storage
        self.trial_ids = list(trial_ids)
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="optuna-heartbeats", daemon=True)

    def __enter__(self) -> Heartbeats:
        self._beat_once()
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            self._beat_once()

    def _beat_once(self) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        for trial_id in list(self.trial_ids):
            try:
                self.storage.record_heartbeat(trial_id)
            except UpdateFinishedTrialError:  # the trial told the study its end: done
                self.trial_ids.remove(trial_id)
            except Exception as error:  # noqa: BLE001 - a missed beat is retried next interval
                log.warning("could not record the heartbeat of trial id %d: %s", trial_id, error)


class OptunaSweep:
    """The sweep loop of one worker (see the module docstring).

    Args:
        settings: the ``hydra.sweeper`` node's values (:class:`~hydra_plugins.calcinet_sweeper.
            optuna_sweeper.CalcinetOptunaSweeperConf`).
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)

    def sweep(self, arguments: list[str]) -> None:
        """Run trials until the study holds ``n_trials`` finished ones; write
        ``<sweep folder>/optimization_results.yaml``.

        Bad input (unknown storage scheme, a searched key not in the config, a stored study of
        the other direction, ...) ends the command with one line and exit status 2.
        """
        previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
        try:
            study, storage, searched, fixed = self._prepare(arguments)
            self._loop(study, storage, searched, fixed)
        except ConfigError as error:
            fail(error)
        except (KeyboardInterrupt, SweepStopped) as stop:
            status = 130 if isinstance(stop, KeyboardInterrupt) else 128 + signal.SIGTERM
            print(f"calcinet: sweep stopped by {'Ctrl+C' if status == 130 else 'SIGTERM'}; its "
                  "open trials are queued again: rerun the same command to continue the study",
                  file=sys.stderr, flush=True)
            sys.exit(status)
        finally:
            signal.signal(signal.SIGTERM, previous)
        self._write_results(study)

    # -- steps --

    def _prepare(self, arguments: list[str]) -> tuple[Any, Any, dict[str, Any], list[str]]:
        assert self.config is not None
        sweeper = OmegaConf.to_container(self.config.hydra.sweeper, resolve=True)
        self.sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        self.study_settings = StudySettings.from_sweeper(sweeper, self.sweep_dir)
        self.n_trials = _positive(sweeper, "n_trials")
        self.n_jobs = _positive(sweeper, "n_jobs")
        self.max_failures = int(sweeper.get("max_failures") or 0)
        self.sampler_cfg = sweeper.get("sampler") or {"_target_": "optuna.samplers.TPESampler"}
        self.pruner_cfg = sweeper.get("pruner")
        searched, fixed = space.parse([*space.params_overrides(sweeper.get("params")),
                                       *arguments])
        task = OmegaConf.masked_copy(self.config, [k for k in self.config if k != "hydra"])
        space.check_keys(searched, task)
        if not searched:
            raise ConfigError("hydra.sweeper.params is empty and no sweep override was given; "
                              f"expected at least one key=<sweep> with {space.GRAMMAR}")
        from hydra.utils import instantiate

        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        storage = open_storage(self.study_settings)
        pruner = instantiate(self.pruner_cfg) if self.pruner_cfg else None
        study = open_study(self.study_settings, storage, self._sampler(None), pruner)
        self._check_space(study, searched)
        log.info("Optuna study %r in %s: %s, %d trials, %d at a time, sampler %s, pruner %s",
                 study.study_name, self.study_settings.shown(), self.study_settings.direction,
                 self.n_trials, self.n_jobs, type(study.sampler).__name__,
                 type(pruner).__name__ if pruner else "none")
        return study, storage, searched, fixed

    def _loop(self, study: Any, storage: Any, searched: dict[str, Any], fixed: list[str]) -> None:
        from filelock import FileLock
        from optuna.storages import fail_stale_trials

        lock = FileLock(self.sweep_dir / LOCK_FILE)
        failures: list[Any] = []
        launched = 0
        waiting_said = False
        while True:
            with lock:
                with warnings.catch_warnings():  # "experimental" since Optuna 2.9
                    warnings.simplefilter("ignore")
                    fail_stale_trials(study)
                finished, running = _counts(study)
                if finished >= self.n_trials:
                    return
                room = self.n_trials - finished - running
                trials = [self._ask(study, searched)
                          for _ in range(min(self.n_jobs, room))]
            if not trials:
                if not waiting_said:
                    log.info("Waiting for %d running trial(s) of other workers (the study has "
                             "%d of %d finished; a trial whose worker was killed is queued "
                             "again after %d s without a heartbeat, hydra.sweeper.grace_period)",
                             running, finished, self.n_trials,
                             self.study_settings.grace_period)
                    waiting_said = True
                # Checked every few seconds: the study may finish in another worker.
                time.sleep(min(self.study_settings.heartbeat_interval, 5))
                continue
            waiting_said = False
            try:
                returns = self._launch(study, storage, trials, fixed, launched)
            except Exception as error:  # the launcher lost jobs (a SLURM job timed out)
                if launched == 0:  # it never ran a job here: a set-up problem (no srun, ...)
                    raise ConfigError(
                        f"hydra/launcher: the launcher could not run the trials "
                        f"({type(error).__name__}: {str(error)[:300]}); expected a launcher "
                        "that works on this machine (the open trials are queued again)"
                    ) from None
                log.warning("The launcher failed (%s: %s): the open trials are queued again",
                            type(error).__name__, str(error)[:500])
                failures.append(error)
                returns = []
            launched += len(trials)
            failures += self._close(study, storage, trials, returns)
            if len(failures) > self.max_failures:
                log.error("%d launch(es) failed (hydra.sweeper.max_failures=%d): stopping",
                          len(failures), self.max_failures)
                if isinstance(failures[-1], BaseException):
                    raise failures[-1]
                _ = failures[-1].return_value  # raises the job's error, as Hydra's sweepers do

    def _sampler(self, number: int | None) -> Any:
        """The sweep's sampler; for trial ``number``, seeded seed + number when seeded."""
        from hydra.utils import instantiate

        seed = self.sampler_cfg.get("seed")
        if number is None or seed is None:
            return instantiate(self.sampler_cfg)
        return instantiate(self.sampler_cfg, seed=int(seed) + number)

    def _ask(self, study: Any, searched: dict[str, Any]) -> Any:
        """A new trial (a queued retry first) with the searched parameters set."""
        import optuna
        from optuna.distributions import CategoricalDistribution, IntDistribution

        with warnings.catch_warnings():  # "heartbeats are meant for Study.optimize": the
            warnings.simplefilter("ignore")  # worker records them itself (Heartbeats)
            asked = study.ask()
        # The sampler of this trial number, then a Trial that samples with it.
        study.sampler = self._sampler(asked.number)
        trial = optuna.Trial(study, asked._trial_id)
        for name, dist in searched.items():  # a retry's parameters are set already: kept
            if isinstance(dist, CategoricalDistribution):
                trial.suggest_categorical(name, dist.choices)
            elif isinstance(dist, IntDistribution):
                trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
            else:
                trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
        return trial

    def _check_space(self, study: Any, searched: dict[str, Any]) -> None:
        """The searched distributions are ones the stored study can take (Optuna refuses a
        parameter whose kind or choices changed within a study).

        Raises:
            ConfigError: naming the key, both distributions and the way out.
        """
        from optuna.distributions import check_distribution_compatibility

        for trial in study.get_trials(deepcopy=False):
            for name, dist in searched.items():
                if name not in trial.distributions:
                    continue
                try:
                    check_distribution_compatibility(trial.distributions[name], dist)
                except ValueError:
                    raise ConfigError(
                        f"hydra.sweeper.params: {name} searches {dist}, but the study "
                        f"{study.study_name!r} in {self.study_settings.shown()} searched "
                        f"{trial.distributions[name]}; expected the study's search space to "
                        "resume it, or another hydra.sweeper.study_name for a new study"
                    ) from None

    def _launch(self, study: Any, storage: Any, trials: list[Any], fixed: list[str],
                launched: int) -> list[Any]:
        """Run ``trials`` through the launcher while their heartbeats are recorded. If the
        launch is interrupted (Ctrl+C, SIGTERM, a trial's exit) or the launcher raises (a job
        it lost), the trials still open are failed and queued again at once, so that neither
        this worker nor a rerun waits for the grace period."""
        jobs = [[*fixed, *space.trial_overrides(trial.params),
                 f"hydra.sweeper.trial={trial.number}"] for trial in trials]
        for trial in trials:
            retried = storage.get_trial(trial._trial_id).system_attrs.get("failed_trial")
            again = f" (trial {retried} again)" if retried is not None else ""
            log.info("Trial %d%s: %s", trial.number, again,
                     " ".join(space.trial_overrides(trial.params)))
        try:
            with Heartbeats(storage, [t._trial_id for t in trials],
                            self.study_settings.heartbeat_interval):
                return list(self.launcher.launch(jobs, initial_job_idx=launched))
        except BaseException:
            self._give_back(study, storage, trials)
            raise

    def _give_back(self, study: Any, storage: Any, trials: list[Any]) -> None:
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        callback = storage.get_heartbeat_stale_trial_callback()
        for trial in trials:
            try:
                if storage.get_trial(trial._trial_id).state != TrialState.RUNNING:
                    continue
                storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                if isinstance(callback, RetryStaleTrial):
                    callback(study, storage.get_trial(trial._trial_id), "was interrupted")
                elif callback is not None:
                    callback(study, storage.get_trial(trial._trial_id))
            except (UpdateFinishedTrialError, KeyError):
                continue
            except Exception as error:  # noqa: BLE001 - already leaving; heartbeats cover it
                log.warning("could not give trial %d back to the study: %s", trial.number, error)

    def _close(self, study: Any, storage: Any, trials: list[Any], returns: list[Any]
               ) -> list[Any]:
        """Finish the trials their jobs left RUNNING; return the failed jobs' returns."""
        from hydra.core.utils import JobStatus
        from optuna.trial import TrialState

        failed = []
        for trial, ret in zip(trials, returns, strict=False):  # none when the launch failed
            state = storage.get_trial(trial._trial_id).state
            if state.is_finished():
                continue
            value = ret.return_value if ret.status == JobStatus.COMPLETED else None
            if isinstance(value, int | float) and math.isfinite(value):
                study.tell(trial.number, float(value))
                continue
            study.tell(trial.number, state=TrialState.FAIL)
            if ret.status == JobStatus.COMPLETED:
                log.warning("Trial %d returned %r, not a number: marked FAIL", trial.number,
                            value)
                continue
            error = getattr(ret, "_return_value", None)  # the job's exception
            log.warning("Trial %d failed: %s: %s", trial.number, type(error).__name__, error)
            failed.append(ret)
        return failed

    def _write_results(self, study: Any) -> None:
        """``optimization_results.yaml`` (best parameters and value, trial counts) and a
        summary line."""
        from optuna.trial import TrialState

        counts = {state.name: 0 for state in TrialState}
        for trial in study.get_trials(deepcopy=False):
            counts[trial.state.name] += 1
        summary: dict[str, Any] = {"name": "optuna", "study_name": study.study_name,
                                   "storage": self.study_settings.shown(),
                                   "direction": self.study_settings.direction,
                                   "trials": {k: v for k, v in counts.items() if v}}
        if counts["COMPLETE"]:
            best = study.best_trial
            summary.update(best_trial=best.number, best_params=best.params,
                           best_value=best.value)
        with atomic_write(self.sweep_dir / RESULTS_FILE) as temporary:  # workers may end at once
            OmegaConf.save(OmegaConf.create(summary), temporary)
        best_text = "no complete trial"
        if "best_value" in summary:
            best_text = (f"best value {summary['best_value']:.4f} in trial "
                         f"{summary['best_trial']} {summary['best_params']}")
        log.info("Study %r: %s; %s (%s)", study.study_name, ", ".join(
            f"{n} {k.lower()}" for k, n in summary["trials"].items()), best_text,
            self.sweep_dir / RESULTS_FILE)


def _counts(study: Any) -> tuple[int, int]:
    """(finished = COMPLETE + PRUNED, RUNNING) trials of the study, every worker's."""
    from optuna.trial import TrialState

    finished = running = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            finished += 1
        elif trial.state == TrialState.RUNNING:
            running += 1
    return finished, running


def _positive(sweeper: dict[str, Any], key: str) -> int:
    value = sweeper.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"hydra.sweeper.{key}={value!r}: expected a positive integer")
    return value


class SweepStopped(BaseException):  # noqa: N818 - like KeyboardInterrupt, not an error
    """SIGTERM reached the sweeper (outside a trial's training, which handles its own); a
    ``BaseException`` so that no ``except Exception`` on the way (Hydra's job runner, the
    launcher-failure handling) takes it for a failed trial."""


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise SweepStopped
