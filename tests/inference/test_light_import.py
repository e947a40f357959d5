"""The inference side needs torch and an image reader, nothing from training or tracking."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = [
    "lightning",
    "pytorch_lightning",
    "hydra",
    "omegaconf",
    "mlflow",
    "monai",
    "calcinet.training",
    "calcinet.models",
    "calcinet.data",
    "calcinet.export",
]

PROBE = r"""
import json, sys
import calcinet.inference, calcinet.cli.predict
print(json.dumps(sorted(sys.modules)))
"""


def test_inference_imports_no_training_stack() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    found = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert found == []
