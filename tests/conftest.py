"""Shared fixtures."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on a two-core machine: one compute thread each (inherited by
    # the commands they start), not one per core each, which oversubscribes the cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def calcinet_logger_as_it_was() -> Iterator[None]:
    """A command run in-process (``main([...])``) gives the ``calcinet`` logger handlers bound
    to that test's captured streams: put the logger back as it was after every test."""
    logger = logging.getLogger("calcinet")
    state = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for handler in logger.handlers:
        if handler not in state[0]:
            handler.close()
    logger.handlers[:], logger.level, logger.propagate = state


@pytest.fixture
def tmp_tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A private SQLite MLflow store for one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri



@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint of a tiny compact CNN (24^3 patches at 1.5 mm), trained for one epoch."""
    from tests.helpers import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("tiny_checkpoint"))
