"""MLflow: where runs go, what they are tagged with, and how to find them again.

The tracking URI is chosen in this order: the ``MLFLOW_TRACKING_URI`` environment variable (the
MLflow convention, so a remote server works unchanged), the configured ``logger.tracking_uri``,
then a SQLite store ``mlflow.db`` in the project folder. MLflow 3 refuses the old ``./mlruns``
file store, which is Lightning's default, so a URI is always given explicitly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lightning.pytorch.loggers import MLFlowLogger

DEFAULT_DB = "mlflow.db"


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


def build_mlflow_logger(
    experiment_name: str = "calcinet",
    run_name: str | None = None,
    tracking_uri: str | None = None,
    root_dir: str | Path = ".",
    artifact_location: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> MLFlowLogger:
    """Lightning's MLflow logger pointed at the resolved store.

    ``artifact_location`` applies to a local store only (a server decides for itself).
    """
    from lightning.pytorch.loggers import MLFlowLogger  # here, so the URI rules load fast

    uri = resolve_tracking_uri(tracking_uri, root_dir)
    location = None
    if not is_remote(uri):
        location = str(Path(artifact_location or Path(root_dir) / "mlartifacts").resolve())
    return MLFlowLogger(
        experiment_name=experiment_name,
        run_name=run_name,
        tracking_uri=uri,
        artifact_location=location,
        tags=dict(tags or {}),
        log_model=False,
    )


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


def run_url(uri: str, experiment_id: str, run_id: str) -> str:
    base = uri.rstrip("/") if is_remote(uri) else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"
