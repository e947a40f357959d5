"""MLflow: where runs go, what they are tagged with, and how to find them again.

The tracking URI is chosen in this order: the ``MLFLOW_TRACKING_URI`` environment variable (the
MLflow convention, so a remote server works unchanged), the configured ``logger.tracking_uri``,
then a SQLite store ``mlflow.db`` in the project folder. MLflow 3 refuses the old ``./mlruns``
file store, which is Lightning's default, so a URI is always given explicitly.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calcinet.lazy import lazy_classes

if TYPE_CHECKING:
    from lightning.pytorch.loggers import Logger, MLFlowLogger

log = logging.getLogger(__name__)

DEFAULT_DB = "mlflow.db"
ON_UNREACHABLE = ("fail", "local")
#: The file in a run folder that names its MLflow run, so ``resume=true`` continues that run.
RUN_ID_FILE = "mlflow_run_id.txt"
#: Tag of a sweep's (or cross-validation's) parent run: the folder that groups its trials.
PARENT_KEY_TAG = "calcinet.parent_key"
#: Tag of a sweep trial's run: RUNNING while it trains, then COMPLETE, PRUNED or FAIL.
TRIAL_STATE_TAG = "calcinet.trial_state"

#: The experiment tag MLflow 3's UI reads to choose an experiment's first page: without it an
#: experiment opens on the GenAI overview (traces, tokens, cost); ``custom_model_development``
#: (MLflow's "traditional ML" kind) opens the runs table.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

# MLflow retries a failed HTTP call 7 times with exponential back-off (minutes in all); a server
# that went away mid-run should cost seconds, so unless the user chose otherwise retry briefly.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


class TrackingUnreachableError(RuntimeError):
    """The MLflow tracking server does not answer; the message names its URI."""


def resolve_tracking_uri(configured: str | None = None, root_dir: str | Path = ".") -> str:
    """``$MLFLOW_TRACKING_URI``, else ``configured``, else ``sqlite:///<root_dir>/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    if configured:
        return str(configured)
    return f"sqlite:///{(Path(root_dir) / DEFAULT_DB).resolve()}"


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "databricks"))


def git_commit(folder: str | Path = ".") -> str | None:
    """The commit checked out in ``folder``, or None outside a git work tree."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def server_reachable(uri: str, timeout: float = 5.0, attempts: int = 3) -> bool:
    """Whether an ``http(s)://`` tracking server answers ``GET /health`` (a few short tries)."""
    url = uri.rstrip("/") + "/health"
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if attempt + 1 < attempts:
            time.sleep(1.0)
    return False


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix):]) if uri.startswith(prefix) else None


def store_writable(uri: str, wait_s: float = 15.0) -> bool:
    """Whether a SQLite store can be written, retrying with back-off (0.5, 1, 2, 4 ... s) for
    up to ``wait_s`` seconds while another process holds its write lock.

    MLflow itself waits about 20 s per call on a locked file, then fails with a long
    SQLAlchemy traceback; this asks SQLite for the write lock directly (``BEGIN IMMEDIATE``,
    rolled back at once). A store that does not exist yet, or any other URI, counts as writable.
    """
    import sqlite3

    path = sqlite_file(uri)
    if path is None or not path.is_file():
        return True
    deadline, pause = time.monotonic() + wait_s, 0.5
    while True:
        try:
            connection = sqlite3.connect(path, timeout=min(pause, 5.0), isolation_level=None)
            try:
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("ROLLBACK")
                return True
            finally:
                connection.close()
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error):
                raise
        if time.monotonic() + pause > deadline:
            return False
        time.sleep(pause)
        pause *= 2


def create_sqlite_store(uri: str) -> None:
    """Create (and migrate) a local SQLite store once, under a file lock beside it.

    MLflow builds a new SQLite store's tables by running its schema migrations in whichever
    process opens it first; two processes doing it at once (sweep workers, two trainings started
    together on a fresh ``mlflow.db``) break the second one's migration. A lock (the
    ``filelock`` package) held for that first open serialises them; its file lives in the
    system's temporary folder, named after the database, not beside the user's store. A remote
    server is left alone.
    """
    path = sqlite_file(uri)
    if path is None:
        return
    import hashlib
    import tempfile

    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    with FileLock(Path(tempfile.gettempdir()) / f"calcinet-mlflow-{name}.lock"):
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)


def checked_tracking_uri(
    tracking_uri: str | None = None, root_dir: str | Path = ".", on_unreachable: str = "fail",
    fallback_dir: str | Path | None = None, lock_wait_s: float = 15.0,
) -> str:
    """The resolved URI, after checking that a remote server answers and that a SQLite store
    is not write-locked by another process (retried for ``lock_wait_s`` seconds).

    ``on_unreachable="fail"`` raises :class:`TrackingUnreachableError` naming the URI;
    ``"local"`` falls back, and says so, to ``sqlite:///<root_dir>/mlflow.db``, or to
    ``sqlite:///<fallback_dir>/mlflow.db`` (the run folder) when that one is the store that
    failed or is locked too.
    """
    if on_unreachable not in ON_UNREACHABLE:
        raise ValueError(f"logger.mlflow.on_unreachable={on_unreachable!r}: expected one of "
                          f"{', '.join(ON_UNREACHABLE)}")
    uri = resolve_tracking_uri(tracking_uri, root_dir)
    if uri.startswith(("http://", "https://")):
        if server_reachable(uri):
            return uri
        problem = (f"MLflow tracking server {uri} does not answer "
                   f"(GET {uri.rstrip('/')}/health)")
        advice = "start it, fix MLFLOW_TRACKING_URI / logger.mlflow.tracking_uri"
    elif store_writable(uri, lock_wait_s):
        return uri
    else:
        problem = (f"MLflow store {uri} is locked by another process (SQLite: database is "
                   f"locked, still after {lock_wait_s:g} s of retries)")
        advice = "let the other process finish or stop it"
    candidates = [Path(root_dir)] + ([Path(fallback_dir)] if fallback_dir is not None else [])
    local = next((f"sqlite:///{(folder / DEFAULT_DB).resolve()}" for folder in candidates
                  if f"sqlite:///{(folder / DEFAULT_DB).resolve()}" != uri
                  and store_writable(f"sqlite:///{(folder / DEFAULT_DB).resolve()}", 0)), None)
    if on_unreachable == "fail" or local is None:
        instead = f" (to log to {local} instead)" if local else ""
        raise TrackingUnreachableError(
            f"{problem}; {advice}, or add logger.mlflow.on_unreachable=local{instead}")
    message = f"{problem}; logging to the local store {local} instead " \
              "(logger.mlflow.on_unreachable=local)"
    log.warning(message)
    return local


def _stop_requested() -> bool:
    """Whether the exception being handled asks training to stop: Lightning's SIGTERM exception
    (raised by its loops after the signal) or Ctrl+C."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    return isinstance(sys.exc_info()[1], SIGTERMException | KeyboardInterrupt)


def _define_resilient_logger() -> type:
    """Build :class:`ResilientMLFlowLogger` on first use, so importing this module stays free
    of Lightning (the evaluation maths and exported-model code import the URI rules)."""
    from lightning.pytorch.loggers import MLFlowLogger

    class ResilientMLFlowLogger(MLFlowLogger):
        """Lightning's MLflow logger whose calls after the run started warn instead of raising,
        and whose epoch metrics are committed together with the epoch's checkpoint.

        After the first MLflow error (e.g. the server went away) logging stops with one warning,
        and training, checkpoints and the run folder carry on.

        While training (between :meth:`hold` ``(True)`` and ``(False)``, called by
        :class:`calcinet.training.recorder.RunRecorder`), Lightning's own metric calls are
        dropped: each epoch's metrics reach MLflow through :meth:`commit`, which
        :class:`calcinet.training.callbacks.ModelCheckpoint` calls once that epoch's
        ``last.ckpt`` is on disk. A run killed at any moment therefore never has metrics
        in MLflow for an epoch its checkpoints do not cover, and resuming never logs an epoch
        twice.
        """

        failed = False
        holding = False

        def hold(self, holding: bool) -> None:
            self.holding = bool(holding)

        def commit(self, metrics: Mapping[str, float], step: int) -> None:
            """Log one finished, checkpointed epoch's metrics at ``step``."""
            self.guarded("logging metrics", super().log_metrics, dict(metrics), step)

        def committed_epochs(self) -> set[int]:
            """The epochs whose metrics are in the run (from its ``epoch`` metric)."""
            history = self.guarded("reading the run", self.experiment.get_metric_history,
                                   self.run_id, "epoch") or []
            return {int(m.value) for m in history}

        def guarded(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
            """``call(*args, **kwargs)``, or None with a warning once MLflow has failed."""
            if self.failed:
                return None
            try:
                return call(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - any tracking error must not stop training
                self.failed = True
                message = (f"MLflow logging to {self._tracking_uri} failed while {what} "
                           f"({type(error).__name__}: {str(error)[:300]}); training continues "
                           "and checkpoints are still written to the run folder, but nothing "
                           "more is logged to MLflow for this run")
                warnings.warn(message, RuntimeWarning, stacklevel=2)
                log.warning(message)
                return None

        def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
            if not self.holding:
                self.guarded("logging metrics", super().log_metrics, metrics, step)

        def log_hyperparams(self, params: Any) -> None:
            """Log ``params`` (flattened) as MLflow parameters, each value whole up to MLflow's
            limit (Lightning's logger cuts every value at 250 characters, silently); a longer
            value is cut with a warning naming it (the run's ``config.yaml`` holds it whole)."""
            self.guarded("logging parameters", self._log_params, params)

        def _log_params(self, params: Any) -> None:
            from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
            from mlflow.entities import Param
            from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

            flat = _flatten_dict(_convert_params(params))
            values = {key: str(value) for key, value in flat.items()}
            for key, value in values.items():
                if len(value) > MAX_PARAM_VAL_LENGTH:
                    message = (f"MLflow parameter {key} is {len(value)} characters long, over "
                               f"MLflow's limit of {MAX_PARAM_VAL_LENGTH}: logged cut to the "
                               "limit; the run's config.yaml artifact holds it whole")
                    warnings.warn(message, RuntimeWarning, stacklevel=3)
                    log.warning(message)
                    values[key] = value[:MAX_PARAM_VAL_LENGTH]
            batch = [Param(key, value) for key, value in values.items()]
            for start in range(0, len(batch), MAX_PARAMS_TAGS_PER_BATCH):
                self.experiment.log_batch(run_id=self.run_id,
                                          params=batch[start:start + MAX_PARAMS_TAGS_PER_BATCH],
                                          **self._log_batch_kwargs)

        def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
            self.guarded("logging a checkpoint", super().after_save_checkpoint, checkpoint_callback)

        def finalize(self, status: str = "success") -> None:
            # Lightning closes the run as "failed" whatever stopped the fit; a stop that was
            # asked for (SIGTERM, Ctrl+C) is MLflow's KILLED, and resume=true reopens the run.
            if status == "failed" and _stop_requested():
                status = "KILLED"
            self.guarded("closing the run", super().finalize, status)

    return ResilientMLFlowLogger


def _define_other_rank_logger() -> type:
    """Build :class:`OtherRankLogger` on first use (see ``_define_resilient_logger``)."""
    from lightning.pytorch.loggers import Logger

    class OtherRankLogger(Logger):
        """Stands in for the MLflow logger on ranks other than 0, which log nothing; callbacks
        that need a logger (``LearningRateMonitor``) still find one on every rank."""

        @property
        def name(self) -> str:
            return "mlflow"

        @property
        def version(self) -> str:
            return ""

        def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
            pass

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            pass

    return OtherRankLogger


# Built on first use, under this module's name: pickling (DDP spawn) finds the classes as
# calcinet.tracking.<name>.
__getattr__ = lazy_classes(__name__, {"ResilientMLFlowLogger": _define_resilient_logger,
                                      "OtherRankLogger": _define_other_rank_logger})


def build_mlflow_logger(
    experiment_name: str = "calcinet",
    run_name: str | None = None,
    tracking_uri: str | None = None,
    root_dir: str | Path = ".",
    artifact_location: str | None = None,
    tags: Mapping[str, Any] | None = None,
    on_unreachable: str = "fail",
    run_id: str | None = None,
    fallback_dir: str | Path | None = None,
    lock_wait_s: float = 15.0,
) -> MLFlowLogger | Logger:
    """Lightning's MLflow logger pointed at the resolved (and, if remote, checked) store.

    ``artifact_location`` applies to a local store only (a server decides for itself).
    ``run_id`` continues an existing run (``resume=true``). A server that does not answer or a
    SQLite store locked by another process (retried for ``lock_wait_s`` s) stops the start
    with one line, or with ``on_unreachable="local"`` logs to a local store (see
    :func:`checked_tracking_uri`; ``fallback_dir`` is the run folder). Errors after the start become
    warnings (see ``ResilientMLFlowLogger``). The other ranks of a distributed run started by
    torchrun or SLURM get an ``OtherRankLogger`` that logs nothing: only rank 0 talks to MLflow,
    and every rank creating a new SQLite store at once breaks its schema migration.
    """
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if getattr(rank_zero_only, "rank", 0) != 0:
        return __getattr__("OtherRankLogger")()
    uri = checked_tracking_uri(tracking_uri, root_dir, on_unreachable, fallback_dir, lock_wait_s)
    create_sqlite_store(uri)
    location = None
    if not is_remote(uri):
        in_run = fallback_dir is not None and sqlite_file(uri) == \
            (Path(fallback_dir) / DEFAULT_DB).resolve()
        store_dir = Path(fallback_dir) if in_run else Path(root_dir)
        location = str(Path(artifact_location or store_dir / "mlartifacts").resolve())
    from mlflow.tracking import MlflowClient

    # Created here rather than by Lightning, which would create it untagged.
    ensure_experiment(MlflowClient(tracking_uri=uri), experiment_name, location)
    return __getattr__("ResilientMLFlowLogger")(
        experiment_name=experiment_name,
        run_name=run_name or (default_run_name(fallback_dir) if fallback_dir else None),
        tracking_uri=uri,
        artifact_location=location,
        tags=dict(tags or {}),
        log_model=False,
        run_id=run_id,
    )


@contextmanager
def fluent_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (``mlflow.start_run``, ``log_model``, ``register_model``) at
    ``uri`` for the block, and leave the process as it was afterwards.

    ``mlflow.set_tracking_uri(previous)`` would pin the store for the rest of the process (later
    changes of ``$MLFLOW_TRACKING_URI`` ignored) and, with ``None``, delete that variable; MLflow's
    own ``_use_tracking_uri`` does the latter. Hence this: the fluent setting is read from MLflow's
    module state (no public getter tells "unset" from "set") and the variable is put back.
    """
    import mlflow
    from mlflow.tracking._tracking_service import utils

    explicit, variable = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(explicit)
        if variable is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = variable


def default_run_name(run_dir: str | Path) -> str:
    """The MLflow run name of a run folder: its name (``2026-12-03_16-15-50``), with its parent's
    for folders numbered inside a sweep or cross-validation (``<study>/trial_3``). MLflow's own
    random names come from Python's ``random``, which the training seed fixes: every run of one
    seed would get the same name."""
    folder = Path(run_dir)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}", folder.name):
        return folder.name
    return f"{folder.parent.name}/{folder.name}"


def ensure_experiment(client: Any, name: str, artifact_location: str | None = None) -> str:
    """The id of experiment ``name``, created (with ``artifact_location``) when missing, and
    tagged ``mlflow.experimentKind=custom_model_development`` either way, so that the MLflow UI
    opens it on its runs table; an experiment made by an older calcinet gets the tag here."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=artifact_location,
                                        tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment.experiment_id


def parent_run(client: Any, experiment_id: str, key: str, name: str) -> str:
    """The id of the parent run tagged ``calcinet.parent_key=key``, created on first use.

    Sweep trials and cross-validation folds find their parent by this key (the sweep folder),
    so the parent is created once per sweep however many trials there are. Several workers of
    one sweep start trials at the same moment: when the key is a folder, a lock file in it
    (``.mlflow_parent.lock``, held for the search and the creation) makes the first of them
    create the parent and the others find it.
    """
    folder = Path(key)
    if not folder.is_dir():
        return _find_or_create_parent(client, experiment_id, key, name)
    from filelock import FileLock

    with FileLock(folder / ".mlflow_parent.lock"):
        return _find_or_create_parent(client, experiment_id, key, name)


def _find_or_create_parent(client: Any, experiment_id: str, key: str, name: str) -> str:
    quoted = key.replace("'", "\\'")
    found = client.search_runs([experiment_id], f"tags.`{PARENT_KEY_TAG}` = '{quoted}'",
                               max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, tags={PARENT_KEY_TAG: key, "mlflow.runName": name})
    return run.info.run_id


def ui_command(uri: str) -> str:
    """The command that shows the runs of ``uri`` in a browser (with this environment's mlflow)."""
    if is_remote(uri):
        return f"open {uri}"
    mlflow = Path(sys.executable).parent / "mlflow"
    try:
        shown = mlflow.relative_to(Path.cwd())
    except ValueError:
        shown = mlflow
    return f"{shown} ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"


#: MLflow 3's UI opens in its GenAI view (traces, tokens) unless told otherwise, whatever the
#: experiment's kind tag: every link calcinet prints asks for the model-training view.
UI_VIEW = "?workflowType=machine_learning"


def run_url(uri: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI page of a run (the server's, or ``mlflow ui``'s default address)."""
    base = uri.rstrip("/") if is_remote(uri) else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}{UI_VIEW}"


def report_to_parent(client: Any, parent_id: str, run_id: str, name: str, score: float,
                     output_dir: str, mode: str = "max") -> None:
    """Keep the best child so far on the parent run (metric ``name``, e.g. ``best/val_auroc``,
    and tags); every child's score goes to ``trials/<metric>``."""
    best = client.get_run(parent_id).data.metrics.get(name)
    client.log_metric(parent_id, name.replace("best/", "trials/", 1), score)
    if best is None or (score > best if mode == "max" else score < best):
        client.log_metric(parent_id, name, score)
        client.set_tag(parent_id, "calcinet.best_run_id", run_id)
        client.set_tag(parent_id, "calcinet.best_output_dir", output_dir)


def close_run(uri: str, run_id: str, status: str, tags: Mapping[str, str] | None = None) -> None:
    """Tag an MLflow run and set its status (``FINISHED``, ``FAILED`` or ``KILLED``) from
    outside the process that ran it (a sweep closing a trial whose process died); an MLflow
    error is a warning, not a failure."""
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(tracking_uri=uri)
        for key, value in (tags or {}).items():
            client.set_tag(run_id, key, value)
        client.set_terminated(run_id, status)
    except Exception as error:  # noqa: BLE001 - bookkeeping of a run that is already over
        message = f"could not close MLflow run {run_id} in {uri} ({type(error).__name__}: {error})"
        log.warning(message)
        log.warning(message)
