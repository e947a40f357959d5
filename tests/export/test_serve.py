"""The README's `mlflow models serve` command, run as written, answers with the model's output."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from calcinet.export import ExportResult, MlflowOptions
from calcinet.export.mlflow_model import log_export
from tests.helpers import REPO
from tests.scaling.conftest import free_port


def _readme_serve_command() -> str:
    """The serve command of the README (its two lines joined), with nothing substituted."""
    text = (REPO / "README.md").read_text()
    found = re.search(r"```bash\n(PATH=\"\$PWD/\.venv/bin:\$PATH\".*?models serve[^\n]*)\n```",
                      text, flags=re.S)
    assert found, "README.md: no `mlflow models serve` command block"
    return found.group(1).replace("\\\n", " ")


@pytest.mark.slow
def test_the_readme_serve_command_serves_the_candidate(
    tiny_export: ExportResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    outcome = log_export(tiny_export.torchscript, None, tiny_export.metadata,
                         MlflowOptions(register_as="calcinet", register=True))
    assert outcome.registered == "calcinet version 1 (alias candidate)", outcome.notes

    # A project folder as the README assumes: mlflow.db beside .venv, a shell whose PATH does
    # not have .venv/bin (not activated).
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])
    port = free_port()
    command = _readme_serve_command().replace("--port 5001", f"--port {port}")
    bin_dir = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != bin_dir)
    env = {**os.environ, "PATH": path}
    env.pop("MLFLOW_TRACKING_URI")
    server = subprocess.Popen(["bash", "-c", command], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.stdout.read()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "mlflow models serve did not answer in 180 s"
                time.sleep(1)
        hu = np.random.default_rng(1).uniform(-1000, 2000, (2, 1, 24, 24, 24)).astype(np.float32)
        body = json.dumps({"inputs": hu.tolist()}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            served = np.asarray(json.loads(response.read())["predictions"], dtype=np.float32)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    with torch.no_grad():
        expected = torch.jit.load(str(tiny_export.torchscript))(torch.from_numpy(hu)).numpy()
    np.testing.assert_allclose(served.ravel(), expected.ravel(), atol=1e-5)
