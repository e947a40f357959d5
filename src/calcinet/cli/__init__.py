"""Console entry points. Each is thin: compose the config, hand it to the package, report.

Two kinds of command, one naming rule (Hydra key ``foo_bar`` <-> option ``--foo-bar``):

- commands that compose a config (``calcinet-train``, ``-cv``, ``-synth``, ``-evaluate``,
  ``-export``) take Hydra ``key=value`` overrides; they are made by :func:`hydra_command`;
- tools that act on files (``calcinet-predict``, ``-check-manifest``, ``-compare``) take
  ``--options``; they are wrapped by :func:`command`.

Every command shares the exit statuses of :data:`EXIT_STATUSES`, ends quietly on a closed pipe
(``| head``) and on Ctrl+C, and reports through the ``calcinet`` logger (:data:`log`).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import shlex
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from calcinet.runtime import skip_exit_collection

Main = TypeVar("Main", bound=Callable[..., Any])

#: The run's report: what a command says goes through this logger (and so into its log file).
log = logging.getLogger("calcinet")

EXIT_STATUSES = """\
exit status:
  0    done
  1    some inputs failed (predict rows, check-manifest problems, data.validate_only problems)
  2    usage or input error: bad option or override, unknown key, unreadable file (one line)
  130  stopped by Ctrl+C
  141  output pipe closed early (e.g. | head)
  143  stopped by SIGTERM (training keeps last.ckpt for resume=true; predict keeps the rows it
       wrote)"""

#: Status of a command whose reader closed the pipe: 128 + SIGPIPE, what a shell reports for a
#: program the signal ended.
BROKEN_PIPE = 128 + 13
INTERRUPTED = 128 + signal.SIGINT
TERMINATED = 128 + signal.SIGTERM


class Terminated(BaseException):
    """A SIGTERM, raised in the main thread of a tool (see :func:`command`) so that it can
    report what it kept before it exits with :data:`TERMINATED`. A ``BaseException``, as
    ``KeyboardInterrupt`` is: the ``except Exception`` that keeps one bad input from stopping
    the others must not take it for a bad input."""


def _raise_terminated(signum: int, frame: object) -> NoReturn:
    raise Terminated


def _config_dir() -> str:
    """``conf/`` shipped inside the package (wheel), else the source tree's top-level ``conf/``."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    return str(package / "conf")  # Hydra names it if it is missing


CONFIG_DIR = _config_dir()


def fail(error: Exception | str) -> NoReturn:
    """Print ``calcinet: error: <message>`` on stderr (and into the run's log file, once logging
    is set up) and exit with status 2."""
    if _reports_errors():
        log.error(str(error))
    else:
        print(f"calcinet: error: {error}", file=sys.stderr, flush=True)
    sys.exit(2)


def _reports_errors() -> bool:
    """Whether an error logged on :data:`log` reaches stderr through our handler."""
    handlers = [*log.handlers, *(logging.getLogger().handlers if log.propagate else [])]
    return any(isinstance(h, _ConsoleHandler) and h.stream is sys.stderr for h in handlers)


def parse_spacing(text: str, what: str) -> tuple[float, float, float]:
    """``"x,y,z"`` voxel size in mm -> three positive numbers, or a ValueError naming ``what``
    and the value (the tools' ``--npy-spacing``)."""
    try:
        values = tuple(float(part) for part in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 < v < float("inf") for v in values):
        raise ValueError(f"{what}={text!r}: expected three positive numbers x,y,z (mm)")
    return values  # type: ignore[return-value]


def warn(message: str) -> None:
    """``calcinet: warning: <message>`` on stderr (and in the run's log file, if any)."""
    log.warning(message)


def user_error(error: BaseException, expected: tuple[type[BaseException], ...]
               ) -> BaseException | None:
    """The user-facing error behind ``error``: itself, or the cause Hydra wrapped in its
    "Error in call to target" when building a config node; None when it is neither."""
    seen = error
    while seen is not None:
        if isinstance(seen, expected):
            return seen
        seen = seen.__cause__
    return None


def _closed_pipe() -> NoReturn:
    # The Python documentation's recipe (signal module, "Note on SIGPIPE"): point stdout at
    # devnull so that the interpreter's final flush does not raise a second time.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(BROKEN_PIPE)


def command(main: Main, *, sigterm: bool = True) -> Main:
    """Wrap a console entry point: exit 141 without a traceback when the reader of stdout goes
    away (``calcinet-predict ... | head``), 130 on Ctrl+C, and with ``sigterm`` 143 on SIGTERM
    (raised as :class:`Terminated`, so the tool can say what it kept); any other error keeps its
    traceback. The process skips the garbage collector's last passes at exit
    (:func:`calcinet.runtime.skip_exit_collection`)."""

    @functools.wraps(main)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        skip_exit_collection()
        if sigterm and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            result = main(*args, **kwargs)
            sys.stdout.flush()  # a closed pipe shows here rather than at interpreter exit
            return result
        except BrokenPipeError:
            _closed_pipe()
        except KeyboardInterrupt:
            print("calcinet: stopped by Ctrl+C", file=sys.stderr, flush=True)
            sys.exit(INTERRUPTED)
        except Terminated:
            print("calcinet: stopped by SIGTERM", file=sys.stderr, flush=True)
            sys.exit(TERMINATED)

    return wrapped  # type: ignore[return-value]


class _ConsoleHandler(logging.StreamHandler):
    """A stream handler that lets a closed pipe reach :func:`command` instead of printing
    logging's own "--- Logging error ---" traceback; with ``pipe_ends_run`` False (the messages
    also go to a log file, the results to a file), the console goes quiet and the run goes on."""

    pipe_ends_run = True

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        if isinstance(sys.exc_info()[1], BrokenPipeError):
            if self.pipe_ends_run:
                raise BrokenPipeError
            # What is still buffered, and the interpreter's last flush, go to devnull.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
            return
        super().handleError(record)


class _Below(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


def stdout_handler(stream: Any = None) -> _ConsoleHandler:
    """Bare messages below WARNING on stdout (or ``stream``): the report reads as if printed."""
    handler = _ConsoleHandler(sys.stdout if stream is None else stream)
    handler.addFilter(_Below(logging.WARNING))
    handler.addFilter(NoAdvertisements())
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def stderr_handler() -> logging.Handler:
    """``calcinet: warning: ...`` / ``calcinet: error: ...`` on stderr."""
    handler = _ConsoleHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.addFilter(NoAdvertisements())
    handler.setFormatter(_PrefixFormatter())
    return handler


class _PrefixFormatter(logging.Formatter):
    """``<package>: <level>: <message>``, e.g. ``calcinet: warning: ...``."""

    def format(self, record: logging.LogRecord) -> str:
        # Python warnings (logging.captureWarnings) arrive on the "py.warnings" logger.
        source = "python" if record.name == "py.warnings" else record.name.split(".")[0]
        return f"{source}: {record.levelname.lower()}: {super().format(record)}"


class NoAdvertisements(logging.Filter):
    """Drop Lightning's tips that advertise its cloud products (``litlogger``, ``litmodels``),
    logged at INFO on every run; every other Lightning message passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("lightning"):
            return True
        message = record.getMessage()
        return not ("Tip:" in message and ("litlogger" in message or "litmodels" in message))


def setup_tool_logging(quiet: bool = False, log_file: Path | None = None,
                       messages_to_stderr: bool = False,
                       command: Sequence[str] = ()) -> None:
    """Logging of the argparse tools: the report on stdout (on stderr with
    ``messages_to_stderr``, when the tool prints its results on stdout), warnings and errors on
    stderr, everything also in ``log_file`` (timestamped) when given; ``quiet`` keeps warnings
    and errors only (and turns progress bars off). ``log_file`` is appended to, each run headed
    by ``command`` (its command line): a rerun that writes nothing (every input failed) keeps
    the log of the run whose results are still beside it."""
    from calcinet import progress

    progress.set_quiet(quiet)
    log.setLevel(logging.INFO)
    log.propagate = False
    for old in list(log.handlers):  # a second call in one process replaces, not adds
        log.removeHandler(old)
        old.close()
    report = stdout_handler(sys.stderr if messages_to_stderr else sys.stdout)
    # Results and messages in files: a reader of stdout that goes away (| head) stops nothing.
    report.pipe_ends_run = log_file is None or messages_to_stderr
    for handler in (report, stderr_handler()):
        if quiet:
            handler.setLevel(max(handler.level, logging.WARNING))
        log.addHandler(handler)
    if log_file is not None:
        try:
            handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        except OSError as error:
            fail(f"{log_file}: the log beside the output cannot be written "
                 f"({error.strerror or type(error).__name__}); expected a folder you can write")
        handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] - %(message)s"))
        handler.handle(log.makeRecord(log.name, logging.INFO, __file__, 0,
                                      "$ " + shlex.join(command), None, None))
        log.addHandler(handler)


def set_quiet(quiet: bool) -> None:
    """Hydra commands' ``quiet=true``: console handlers keep warnings and errors only (the log
    file keeps everything); progress bars are off."""
    from calcinet import progress

    progress.set_quiet(quiet)
    if not progress.shown():  # MLflow's artifact bars, as ours: a terminal only, never quiet
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if not quiet:
        return
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Registered model ..." and the like
    for logger in (logging.getLogger(), log):
        for handler in logger.handlers:
            if not isinstance(handler, logging.FileHandler):
                handler.setLevel(max(handler.level, logging.WARNING))


class _Deprecated(argparse.Action):
    """A hidden old spelling of an option: stores into the new option's ``dest`` and says once
    on stderr which name to use."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str = "", **kwargs: Any):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(f"{parser.prog}: warning: {option_string} is deprecated; use {self.new}",
              file=sys.stderr, flush=True)
        setattr(namespace, self.dest, values)


def deprecated_alias(parser: argparse.ArgumentParser, old: str, new: str, **kwargs: Any) -> None:
    """Accept ``old`` (hidden from ``--help``) as a spelling of the option ``new``."""
    dest = new.lstrip("-").replace("-", "_")
    parser.add_argument(old, dest=dest, action=_Deprecated, new=new, help=argparse.SUPPRESS,
                        default=argparse.SUPPRESS, **kwargs)


def _lightning_logs_to_root() -> None:
    """``import lightning`` puts its own ``INFO: ...`` stderr handler on the ``lightning`` logger,
    whose records also propagate to the root: drop that handler so that Lightning's messages
    reach the terminal once, through the run's handlers, and the run's log file. A deprecation
    Lightning itself triggers in torch is left out."""
    import lightning  # noqa: F401 - imported for its side effect on the logger

    lightning_log = logging.getLogger("lightning")
    for handler in list(lightning_log.handlers):
        if type(handler) is logging.StreamHandler:
            lightning_log.removeHandler(handler)
    # Lightning 2.6 builds torch's LeafSpec, which torch 2.10+ deprecates: a FutureWarning on
    # every training that nothing on the user's side can change.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)


def hydra_command(config_name: str, lightning: bool = False
                  ) -> Callable[[Callable[..., Any]], Callable[[], Any]]:
    """Make ``task(cfg)`` a Hydra console command on ``conf/<config_name>.yaml``; ``lightning``:
    the task uses Lightning, whose messages are routed into the run's report (and log file).

    Errors Hydra raises before ``task`` starts (an override that does not parse, an unknown key
    or group option) end with one ``calcinet: error:`` line and exit status 2, as calcinet's own
    input errors do; ``quiet=true`` is applied before ``task`` runs; errors inside ``task``
    keep their traceback.
    """
    import hydra

    import calcinet.config  # noqa: F401 - registers the ${calcinet.*} resolvers the configs use

    def decorate(task: Callable[..., Any]) -> Callable[[], Any]:
        started = False

        @functools.wraps(task)
        def run_task(cfg: Any) -> Any:
            nonlocal started
            started = True
            set_quiet(bool(cfg.get("quiet", False)))
            logging.captureWarnings(True)  # Python warnings reach the log file too
            if lightning:
                _lightning_logs_to_root()
            return task(cfg)

        hydra_main = hydra.main(version_base="1.3", config_path=CONFIG_DIR,
                                config_name=config_name)(run_task)

        # No SIGTERM handler of ours: Lightning's stops training at the end of a batch, and it
        # would call one it finds installed as well, which would stop the batch midway.
        @functools.partial(command, sigterm=False)
        def main() -> Any:
            # Hydra prints its own errors as several lines and exits 1; with HYDRA_FULL_ERROR it
            # raises them instead, so that they can be told apart from the task's.
            given = os.environ.get("HYDRA_FULL_ERROR")
            os.environ["HYDRA_FULL_ERROR"] = "1"
            try:
                return hydra_main()
            except BrokenPipeError:
                raise  # ends quietly in command()
            except Exception as error:
                if started or given == "1":
                    raise
                fail(_one_line(error))
            finally:  # the process's environment as it was (matters when called in-process)
                if given is None:
                    os.environ.pop("HYDRA_FULL_ERROR", None)
                else:
                    os.environ["HYDRA_FULL_ERROR"] = given

        return main

    return decorate


def _one_line(error: BaseException) -> str:
    """Hydra's message and its cause (``Key 'x' is not in struct``) as one line: a list under a
    ``...:`` line is joined with commas (internal ``_`` options left out), the config search
    path is left out."""
    parts: list[str] = []
    seen: BaseException | None = error
    while seen is not None:
        text = str(seen).split("Config search path:")[0]
        head: list[str] = []
        items: list[str] = []
        for line in (line.strip() for line in text.splitlines()):
            if not line or line.startswith(("full_key:", "object_type")):
                continue
            if head and head[-1].endswith(":"):
                if not line.startswith("_"):
                    items.append(line)
            else:
                head.append(line)
        if head:
            parts.append(" ".join(head) + (" " + ", ".join(items) if items else ""))
        seen = seen.__cause__
    return ": ".join(parts) or type(error).__name__
