"""Where a study lives, and how a trial whose process died is noticed and run again.

A study is shared through its storage, so that a rerun resumes it and several workers (processes
on one machine, or nodes) add trials to the same study:

* ``hydra.sweeper.storage: null`` (the default): Optuna's journal file
  ``<sweep folder>/optuna_journal.log`` (``JournalStorage`` over ``JournalFileBackend``, which
  locks the file, so workers on one machine or on a shared file system can append at once);
* a file path: a journal file there;
* a database URL that SQLAlchemy knows (``sqlite:///...``, ``postgresql://...``,
  ``mysql+pymysql://...``): Optuna's ``RDBStorage``, for a shared database server.

**Heartbeats.** A trial whose worker was killed (SIGKILL, a lost node) stays RUNNING in the
storage. Optuna's answer is the heartbeat: the worker that owns a trial records one every
``heartbeat_interval`` seconds, and :func:`optuna.storages.fail_stale_trials` fails any RUNNING
trial silent for longer than ``grace_period``, then calls the storage's stale-trial callback,
here Optuna's ``RetryHeartbeatStaleTrialCallback``, which queues the same parameters again as a
new WAITING trial that the next ``ask`` picks up. Optuna 5 implements heartbeats only for
``RDBStorage``; :class:`HeartbeatJournalStorage` gives the journal storage the same interface
(``BaseHeartbeat``), so both storages go through Optuna's own stale-trial code. Another worker's
trial is never taken for a dead one while its worker is alive: the rule is silence, not age.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from calcinet.config import ConfigError
from calcinet.lazy import lazy_classes

log = logging.getLogger(__name__)

#: The journal file in the sweep folder when ``hydra.sweeper.storage`` is null.
JOURNAL_NAME = "optuna_journal.log"
#: Trial system attribute holding the last heartbeat (seconds since the epoch) on a journal.
HEARTBEAT_ATTR = "calcinet:heartbeat"
DIRECTIONS = {"max": "maximize", "maximize": "maximize", "min": "minimize",
              "minimize": "minimize"}
STORAGE_EXPECTED = ("null (a journal file in the sweep folder), a journal file path, or a "
                    "database URL such as sqlite:///PATH, postgresql://HOST/DB or "
                    "mysql+pymysql://HOST/DB")


@dataclass(frozen=True)
class StudySettings:
    """What identifies a study and how its trials are watched (from ``hydra.sweeper``).

    Attributes:
        study_name: the study's name in its storage (rerunning with it resumes the study).
        storage: ``hydra.sweeper.storage`` as configured (None: journal in ``sweep_dir``).
        sweep_dir: the sweep folder (absolute).
        direction: ``"maximize"`` or ``"minimize"``.
        heartbeat_interval: seconds between two heartbeats of a running trial.
        grace_period: seconds of silence after which a RUNNING trial counts as dead.
        max_retry: how often a dead trial's parameters are queued again (None: always).
    """

    study_name: str
    storage: str | None
    sweep_dir: Path
    direction: str
    heartbeat_interval: int
    grace_period: int
    max_retry: int | None

    @classmethod
    def from_sweeper(cls, sweeper: DictConfig | dict[str, Any], sweep_dir: str | Path
                     ) -> StudySettings:
        """Read and check ``hydra.sweeper`` (a resolved mapping) and the sweep folder.

        Raises:
            ConfigError: a direction, interval or grace period that cannot work (one line
                naming the key, the value and what is expected).
        """
        direction = DIRECTIONS.get(str(sweeper.get("direction")).lower())
        if direction is None:
            raise ConfigError(f"hydra.sweeper.direction={sweeper.get('direction')!r}: expected "
                              "maximize or minimize (or max / min, as monitor.mode)")
        interval = sweeper.get("heartbeat_interval")
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
            raise ConfigError(f"hydra.sweeper.heartbeat_interval={interval!r}: expected a "
                              "whole number of seconds >= 1")
        grace = sweeper.get("grace_period")
        grace = 2 * interval if grace is None else grace
        if not isinstance(grace, int | float) or grace <= interval:
            raise ConfigError(f"hydra.sweeper.grace_period={grace!r}: expected seconds longer "
                              f"than hydra.sweeper.heartbeat_interval={interval}, or null "
                              "(twice the interval)")
        retry = sweeper.get("max_retry")
        if retry is not None and (not isinstance(retry, int) or retry < 0):
            raise ConfigError(f"hydra.sweeper.max_retry={retry!r}: expected an integer >= 0 "
                              "or null (no limit)")
        storage = sweeper.get("storage")
        return cls(str(sweeper.get("study_name")), None if storage in (None, "") else
                   str(storage), Path(sweep_dir).resolve(), direction, interval, int(grace),
                   retry)

    def location(self) -> tuple[str, str]:
        """``("journal", absolute file path)`` or ``("rdb", database URL)``.

        Raises:
            ConfigError: a URL whose scheme is neither a SQLAlchemy database nor a file.
        """
        if self.storage is None:
            return "journal", str(self.sweep_dir / JOURNAL_NAME)
        if "://" not in self.storage:
            return "journal", str(Path(self.storage).expanduser().resolve())
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            make_url(self.storage).get_dialect()
        except (ArgumentError, NoSuchModuleError, ValueError):
            scheme = self.storage.split("://", 1)[0]
            raise ConfigError(f"hydra.sweeper.storage={self.shown()!r}: unknown scheme "
                              f"{scheme!r}; expected {STORAGE_EXPECTED}") from None
        return "rdb", self.storage

    def shown(self) -> str:
        """The storage as it may be printed (a database password hidden)."""
        if self.storage is None or "://" not in self.storage:
            return self.location()[1] if self.storage is None else self.storage
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.storage).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - printing only; an unparsable URL has no password
            return self.storage


def _define_journal_storage() -> type:
    """Build :class:`HeartbeatJournalStorage` on first use: importing optuna costs seconds, and
    every calcinet command scans the Hydra plugin that imports this module."""
    from optuna.storages import JournalStorage
    from optuna.storages._heartbeat import BaseHeartbeat
    from optuna.trial import TrialState

    class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
        """Optuna's journal storage with the heartbeat interface Optuna gives only its RDB
        storage (see the module docstring).

        A heartbeat is the trial system attribute ``calcinet:heartbeat`` (seconds since the
        epoch, from the worker's clock: workers sharing a journal file need clocks that agree
        to well within ``grace_period``). A RUNNING trial's last sign of life is its start or its
        latest heartbeat, whichever is later, so a trial queued again with its attributes copied
        (Optuna's retry callback copies them) starts with a clean slate.
        """

        def __init__(self, backend: Any, heartbeat_interval: int, grace_period: int,
                     stale_callback: Callable[..., None] | None = None) -> None:
            super().__init__(backend)
            self.heartbeat_interval = heartbeat_interval
            self.grace_period = grace_period
            self.stale_callback = stale_callback

        def record_heartbeat(self, trial_id: int) -> None:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            now = time.time()
            stale = []
            for trial in self.get_all_trials(study_id, deepcopy=False,
                                             states=(TrialState.RUNNING,)):
                started = trial.datetime_start.timestamp() if trial.datetime_start else now
                beat = trial.system_attrs.get(HEARTBEAT_ATTR)
                alive = max(started, beat) if isinstance(beat, int | float) else started
                if now - alive > self.grace_period:
                    stale.append(trial._trial_id)
            return stale

        def get_heartbeat_interval(self) -> int | None:
            return self.heartbeat_interval

        def get_heartbeat_stale_trial_callback(self) -> Callable[..., None] | None:
            return self.stale_callback

    return HeartbeatJournalStorage


# Built on first use, under this module's name, so that pickling (submitit jobs) finds it.
__getattr__ = lazy_classes(__name__, {"HeartbeatJournalStorage": _define_journal_storage})


class RetryStaleTrial:
    """The stale-trial callback: Optuna's ``RetryHeartbeatStaleTrialCallback`` queues the
    trial's parameters again (up to ``max_retry`` times), then the trial's MLflow run, which
    its dead process left RUNNING, is closed as KILLED with ``calcinet.trial_state=FAIL``."""

    def __init__(self, max_retry: int | None) -> None:
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        with warnings.catch_warnings():  # "experimental" since Optuna 2.8
            warnings.simplefilter("ignore")
            self.retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def __call__(self, study: Any, trial: Any,
                 why: str = "sent no heartbeat for longer than the grace period") -> None:
        log.warning("Trial %d %s: marked FAIL and queued again with the same parameters",
                    trial.number, why)
        self.retry(study, trial)
        run_id, uri = trial.user_attrs.get("mlflow_run_id"), \
            trial.user_attrs.get("mlflow_tracking_uri")
        if run_id and uri:
            from calcinet.tracking import TRIAL_STATE_TAG, close_run

            close_run(uri, run_id, "KILLED", {TRIAL_STATE_TAG: "FAIL"})


def open_storage(settings: StudySettings, heartbeats: bool = True) -> Any:
    """The study's Optuna storage; with ``heartbeats``, one that records and checks them and
    retries dead trials (the sweeper's); without, a plain one (a trial's own process).

    Raises:
        ConfigError: an unknown storage scheme, or a database that cannot be opened.
    """
    kind, where = settings.location()
    callback = RetryStaleTrial(settings.max_retry) if heartbeats else None
    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend

        Path(where).parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(where)
        if not heartbeats:
            from optuna.storages import JournalStorage

            return JournalStorage(backend)
        return __getattr__("HeartbeatJournalStorage")(
            backend, settings.heartbeat_interval, settings.grace_period, callback)
    from optuna.storages import RDBStorage

    options = {"heartbeat_interval": settings.heartbeat_interval,
               "grace_period": settings.grace_period,
               "heartbeat_stale_trial_callback": callback} if heartbeats else {}
    from filelock import FileLock

    # Optuna creates a new database's tables in the first process that opens it; workers started
    # together would race for that (a UNIQUE constraint error in the loser).
    settings.sweep_dir.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings(), FileLock(settings.sweep_dir / ".optuna_storage.lock"):
            warnings.simplefilter("ignore")  # heartbeat arguments are "experimental"
            return RDBStorage(where, **options)
    except Exception as error:  # noqa: BLE001 - a driver missing, a server down, a bad URL
        raise ConfigError(f"hydra.sweeper.storage={settings.shown()!r}: cannot open the "
                          f"database ({type(error).__name__}: {str(error)[:300]}); expected "
                          f"{STORAGE_EXPECTED}, reachable from here") from None


def open_study(settings: StudySettings, storage: Any, sampler: Any = None, pruner: Any = None,
               create: bool = True) -> Any:
    """The study ``settings.study_name`` in ``storage``: created on first use (``create``),
    loaded as it is after that.

    Raises:
        ConfigError: the stored study optimises in the other direction, or (``create=False``)
            there is no such study.
    """
    import optuna

    if create:
        study = optuna.create_study(study_name=settings.study_name, storage=storage,
                                    sampler=sampler, pruner=pruner,
                                    direction=settings.direction, load_if_exists=True)
    else:
        try:
            study = optuna.load_study(study_name=settings.study_name, storage=storage,
                                      sampler=sampler, pruner=pruner)
        except KeyError:
            raise ConfigError(f"hydra.sweeper.study_name={settings.study_name!r}: no such study "
                              f"in {settings.shown()}") from None
    stored = study.direction.name.lower()
    if stored != settings.direction:
        raise ConfigError(
            f"hydra.sweeper.direction={settings.direction}: the study "
            f"{settings.study_name!r} in {settings.shown()} was created to {stored}; expected "
            f"direction={stored} (monitor.mode={stored[:3]}) to resume it, or another "
            "hydra.sweeper.study_name for a new study")
    return study
