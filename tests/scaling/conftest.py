"""Fixtures for the scaling tests: a real MLflow tracking server on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Tiny but real: 16^3 patches, a compact [8, 16] network, a few dozen samples.
TINY = [
    "debug=smoke",
    "data.patch_size=[16,16,16]",
    "data.spacing=[2.0,2.0,2.0]",
    "model.network.channels=[8,16]",
    "data.source.num_train=32",
    "data.source.num_val=16",
    "data.source.num_test=8",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(uri: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"mlflow server {uri} did not become healthy in {timeout:.0f} s")


@dataclass
class Server:
    """A running ``mlflow server``; ``stop()`` kills it (for the mid-run failure test)."""

    uri: str
    process: subprocess.Popen
    folder: Path

    def stop(self) -> None:
        """Stop the server and its workers (its own process group)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=15)
                break
            except subprocess.TimeoutExpired:
                continue


def start_server(folder: Path) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    process = subprocess.Popen(
        [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=(folder / "server.log").open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Server(f"http://127.0.0.1:{port}", process, folder)
    try:
        wait_healthy(server.uri)
    except RuntimeError:
        server.stop()
        raise RuntimeError((folder / "server.log").read_text()[-3000:]) from None
    return server


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real tracking server for the session, stopped at the end."""
    server = start_server(tmp_path_factory.mktemp("mlflow_server"))
    yield server
    server.stop()
