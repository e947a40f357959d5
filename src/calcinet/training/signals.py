"""Stopping on SIGTERM with several training processes (``trainer=ddp``, ``torchrun``).

Lightning installs a SIGTERM handler in the processes that train; its loops stop at the end of the
batch once the flag is set, and under DDP rank 0 shares the flag with a broadcast that every rank
makes at the start of each training batch. Two gaps are closed here:

* :func:`relay_sigterm`: under ``ddp_spawn`` the launching process only waits for its workers, so
  a SIGTERM to it alone (``kill PID``, a container runtime) ended it and left the workers
  training. It now forwards the first SIGTERM to them, as Lightning's own launcher does for plain
  ``ddp``, waits for them to stop (a second SIGTERM kills them), and raises Lightning's
  ``SIGTERMException`` so the launching process closes the MLflow run and exits as any stopped
  run does.
* :class:`SigtermFlagOnly`: Lightning's handler also makes a broadcast from inside the signal
  handler. A rank that gets the signal while another rank waits in a different collective (the
  checkpoint barrier or the metric sync at the end of an epoch) then pairs the wrong operations
  and both wait for ever. The callback leaves only the flag (and Lightning's relay to child
  processes) in the handler; the per-batch broadcast still carries it to every rank.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher
from lightning.pytorch.utilities.exceptions import SIGTERMException


class TrainingStopped(Exception):
    """A SIGTERM stopped ``trainer.fit``; ``last.ckpt`` of the run folder (the message) holds
    the last finished epoch. Console scripts exit with 128 + SIGTERM, as the signal would."""


def spawns_workers(trainer: L.Trainer) -> bool:
    """Whether ``trainer.fit`` trains in spawned worker processes rather than in this one."""
    return isinstance(trainer.strategy.launcher, _MultiProcessingLauncher)


@contextmanager
def relay_sigterm(trainer: L.Trainer) -> Iterator[None]:
    """While in the block, relay a SIGTERM of this process to the workers it spawned.

    A second SIGTERM while waiting for them kills them (SIGKILL). Does nothing unless
    ``trainer`` spawns its processes (``ddp_spawn``) and this is the main thread (the only one
    that may install signal handlers).
    """
    launcher = trainer.strategy.launcher
    if not spawns_workers(trainer) or threading.current_thread() is not threading.main_thread():
        yield
        return
    relayed = False

    def relay(signum: int, frame: FrameType | None) -> None:
        nonlocal relayed
        if relayed:  # a second SIGTERM while waiting: stop the workers now
            launcher.kill(signal.SIGKILL)
            raise SIGTERMException
        relayed = True
        launcher.kill(signum)  # the workers' Lightning handlers stop after the current batch
        for process in getattr(launcher, "procs", []):
            process.join()
        raise SIGTERMException

    previous = signal.signal(signal.SIGTERM, relay)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class SigtermFlagOnly(Callback):
    """Under DDP, replace Lightning's SIGTERM handler by one without collectives (see above).

    Installed at ``on_train_start``, after Lightning registered its handlers; Lightning's
    teardown restores the handlers that were there before it, as usual. One process: unchanged.
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size <= 1 or threading.current_thread() is not threading.main_thread():
            return
        connector = trainer._signal_connector

        def flag(signum: int, frame: FrameType | None) -> None:
            if not connector.received_sigterm and trainer.strategy.launcher is not None:
                trainer.strategy.launcher.kill(signum)  # child processes, as Lightning does
            connector.received_sigterm = True

        signal.signal(signal.SIGTERM, flag)
