"""Every console script answers ``--help`` and Hydra's tab completion without the heavy stack.

Each command runs in a fresh interpreter, through the entry point that pip installed (read back
from the package metadata, so a new command is covered without editing this file), and the test
lists the modules it loaded. torch, MONAI, Lightning, MLflow and Optuna take seconds to import;
they belong to the work a command does, not to its start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

HEAVY = ("torch", "monai", "lightning", "pytorch_lightning", "mlflow", "optuna", "torchvision",
         "scipy", "sklearn", "SimpleITK", "pydicom", "nibabel", "matplotlib", "pandas")

COMMANDS = sorted((ep.name, ep.value) for ep in entry_points(group="console_scripts")
                  if ep.value.startswith("calcinet."))

PROBE = r"""
import contextlib, io, json, os, sys
from importlib import import_module
module, function = sys.argv[1].split(":")
sys.argv = [sys.argv[2], *sys.argv[3:]]
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        getattr(import_module(module), function)()
    except SystemExit as stop:
        status = stop.code
    else:
        status = 0
print(json.dumps({"status": status, "out": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def _start(entry: str, name: str, *args: str, env: dict[str, str] | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, entry, name, *args], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _heavy(modules: list[str]) -> list[str]:
    return sorted({m.split(".")[0] for m in modules if m.split(".")[0] in HEAVY})


def test_every_command_is_covered() -> None:
    assert {name for name, _ in COMMANDS} >= {
        "calcinet-train", "calcinet-cv", "calcinet-evaluate", "calcinet-export", "calcinet-synth",
        "calcinet-predict", "calcinet-compare", "calcinet-check-manifest"}


@pytest.mark.parametrize(("name", "entry"), COMMANDS)
def test_help_imports_nothing_heavy(name: str, entry: str) -> None:
    started = _start(entry, name, "--help")
    assert started["status"] in (0, None), started
    # Hydra's help ends with the composed config; argparse's starts with the usage line.
    assert "== Config ==" in started["out"] or started["out"].startswith("usage: ")
    assert _heavy(started["modules"]) == []


@pytest.mark.parametrize(("name", "entry"), [c for c in COMMANDS if c[0] in (
    "calcinet-train", "calcinet-evaluate", "calcinet-export", "calcinet-synth", "calcinet-cv")])
def test_tab_completion_imports_nothing_heavy(name: str, entry: str) -> None:
    env = {**os.environ, "COMP_LINE": f"{name} trai", "COMP_POINT": str(len(name) + 5)}
    started = _start(entry, name, "-sc", "query=bash", env=env)
    assert started["status"] in (0, None), started
    if name in ("calcinet-train", "calcinet-cv"):
        assert "trainer=" in started["out"].split()  # Hydra completed the config group
    assert _heavy(started["modules"]) == []
