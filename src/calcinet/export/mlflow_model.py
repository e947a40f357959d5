"""Log the exported model to MLflow: into the training run when the checkpoint knows it.

The TorchScript file is logged as an MLflow model (``mlflow.pytorch`` flavour, so
``mlflow.pyfunc.load_model`` serves it) with an input example, a tensor signature and the
metadata, and the exported files themselves are logged as artifacts under ``export/``. The model
is registered in the model registry when the store has one (SQLite and servers do).

Tracking URI, first that is set: ``$MLFLOW_TRACKING_URI``, the ``mlflow.tracking_uri`` option,
the checkpoint's own URI, ``sqlite:///<cwd>/mlflow.db`` (as for training).
"""

from __future__ import annotations

import logging
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from calcinet.inference.metadata import METADATA_FILE, dumps
from calcinet.inference.model import quiet_torchscript


@dataclass
class MlflowOptions:
    """The ``mlflow`` node of ``conf/export.yaml``."""

    enabled: bool = True
    tracking_uri: str | None = None
    experiment_name: str = "calcinet"
    new_run: bool = True
    register_as: str | None = "calcinet"


@dataclass
class MlflowOutcome:
    """What was logged where (``logged`` False: skipped, and ``notes`` say why)."""

    logged: bool = False
    tracking_uri: str | None = None
    run_id: str | None = None
    model_uri: str | None = None
    registered: str | None = None
    notes: list[str] = field(default_factory=list)


def resolve_uri(options: MlflowOptions, checkpoint_uri: str | None) -> str:
    from calcinet.tracking import resolve_tracking_uri  # imports Lightning: only when logging

    return resolve_tracking_uri(options.tracking_uri or checkpoint_uri, Path.cwd())


def unreachable(uri: str, timeout: float = 5.0) -> str | None:
    """Why the store at ``uri`` cannot be used, or None (servers: ``GET /health``)."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
                return None
        except (urllib.error.URLError, OSError) as error:
            return f"{uri} does not answer ({getattr(error, 'reason', error)})"
    if uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///") :]).parent
        if not folder.is_dir():
            return f"{uri}: folder {folder} does not exist"
    return None


class _HidePickleWarning(logging.Filter):
    """mlflow.pytorch warns about pickle for every non-pt2 model; a ScriptModule is saved with
    ``torch.jit.save``, not pickled, so the warning does not apply."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Pickle" not in record.getMessage()


def _signature(patch_size: list[int]) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 1, *patch_size))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1,))]),
    )


def log_export(
    torchscript: Path, program: Path | None, metadata: dict[str, Any], options: MlflowOptions
) -> MlflowOutcome:
    """Log the export; problems with the store become notes, never a failed export."""
    outcome = MlflowOutcome()
    if not options.enabled:
        outcome.notes.append("mlflow.enabled=false: not logged to MLflow")
        return outcome
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from calcinet.tracking import is_remote

    training = metadata.get("training", {})
    uri = resolve_uri(options, training.get("mlflow_tracking_uri"))
    outcome.tracking_uri = uri
    problem = unreachable(uri)
    if problem:
        outcome.notes.append(f"MLflow tracking store not reachable: {problem}; not logged")
        return outcome
    client = MlflowClient(uri)
    run_id = training.get("mlflow_run_id")
    status = None
    if run_id:
        try:
            status = client.get_run(run_id).info.status
        except MlflowException:
            outcome.notes.append(f"the checkpoint's run {run_id} is not in {uri}")
            run_id = None
    else:
        outcome.notes.append("the checkpoint names no MLflow run")
    if run_id is None:
        if not options.new_run:
            outcome.notes.append("mlflow.new_run=false: not logged to MLflow")
            return outcome
        experiment = client.get_experiment_by_name(options.experiment_name)
        if experiment is None:  # artifacts beside the store, as calcinet-train puts them
            location = None if is_remote(uri) else str((Path.cwd() / "mlartifacts").resolve())
            experiment_id = client.create_experiment(options.experiment_name, location)
        else:
            experiment_id = experiment.experiment_id
        run_id = client.create_run(
            experiment_id, run_name=f"export-{torchscript.stem}", tags={"calcinet.kind": "export"}
        ).info.run_id
        status = "FINISHED"
        outcome.notes.append(f"logged into a new run of experiment {options.experiment_name!r}")
    outcome.run_id = run_id

    previous_uri = mlflow.get_tracking_uri()
    hide = _HidePickleWarning()
    logging.getLogger("mlflow.pytorch").addFilter(hide)
    mlflow.set_tracking_uri(uri)
    try:
        with quiet_torchscript():
            module = torch.jit.load(str(torchscript), map_location="cpu")
        patch_size = metadata["input"]["patch_size"]
        example = np.full((1, 1, *patch_size), metadata["input"]["pad_value_hu"], np.float32)
        mlflow.start_run(run_id=run_id)
        try:
            with tempfile.TemporaryDirectory() as folder:
                sidecar = Path(folder) / METADATA_FILE
                sidecar.write_text(dumps(metadata))
                with quiet_torchscript():
                    info = mlflow.pytorch.log_model(
                        module,
                        name="model",
                        serialization_format="pickle",
                        signature=_signature(patch_size),
                        input_example=example,
                        metadata={"calcinet": metadata},
                        extra_files=[str(sidecar)],
                        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
                    )
            mlflow.log_artifact(str(torchscript), "export")
            if program is not None:
                mlflow.log_artifact(str(program), "export")
            parity = metadata["export"].get("parity") or {}
            if parity.get("torchscript_max_abs_diff") is not None:
                mlflow.log_metric("export/parity_max_abs_diff", parity["torchscript_max_abs_diff"])
            mlflow.set_tag("calcinet.export.path", str(torchscript.resolve()))
        finally:
            mlflow.end_run(status=status or "FINISHED")
        outcome.logged = True
        outcome.model_uri = info.model_uri
        if options.register_as:
            decision = metadata["decision"]
            tags = {
                "calcinet.threshold": decision["threshold"],
                "calcinet.config_hash": training.get("config_hash"),
                "calcinet.data_fingerprint": training.get("data_fingerprint"),
            }
            try:
                version = mlflow.register_model(
                    info.model_uri,
                    options.register_as,
                    tags={k: str(v) for k, v in tags.items() if v is not None},
                )
                outcome.registered = f"{options.register_as} version {version.version}"
            except MlflowException as error:
                outcome.notes.append(
                    f"not registered as {options.register_as!r}: "
                    f"{str(error.message).splitlines()[0]}"
                )
    finally:
        mlflow.set_tracking_uri(previous_uri)
        logging.getLogger("mlflow.pytorch").removeFilter(hide)
    return outcome
