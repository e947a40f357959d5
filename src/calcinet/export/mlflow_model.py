"""Log the exported model to MLflow: into the training run when the checkpoint knows it.

The TorchScript file is logged as an MLflow model (``mlflow.pytorch`` flavour, so
``mlflow.pyfunc.load_model`` and ``mlflow models serve`` serve it) with a tensor signature, the
metadata (``signature_description`` says units, orientation, spacing and shapes, which MLflow's
signature has no field for) and the model card, and the exported files themselves are logged as
artifacts under ``export/``. No input example is stored: one patch is a whole 3D volume (1 MB of
NumPy plus 2.4 MB of JSON at 48^3); the README shows a request built in two lines instead.

Registration (``mlflow.register``): true registers, false never, null registers unless the
checkpoint comes from a debug run (``debug=smoke``). A new version gets the model card as its
description, the checkpoint's SHA-256 as a tag (``calcinet.checkpoint_sha256``, so that a later
``calcinet-evaluate`` finds it) and the alias ``candidate``, moved to the newest version;
``champion`` is left to the user.

Tracking URI, first that is set: ``$MLFLOW_TRACKING_URI``, the ``mlflow.tracking_uri`` option,
the checkpoint's own URI, ``sqlite:///<cwd>/mlflow.db`` (as for training).
"""

from __future__ import annotations

import contextlib
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
    register: bool | None = None


@dataclass
class MlflowOutcome:
    """What was logged where (``logged`` False: skipped, and ``notes`` say why)."""

    logged: bool = False
    tracking_uri: str | None = None
    run_id: str | None = None
    model_uri: str | None = None
    registered: str | None = None
    version: str | None = None
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


class _HideInapplicable(logging.Filter):
    """MLflow messages that say nothing about an exported model: mlflow.pytorch warns about
    pickle for every non-pt2 model, but a ScriptModule is saved with ``torch.jit.save``, not
    pickled; and MLflow announces "Detected uv project" whenever it runs in a checkout with a
    ``uv.lock`` (calcinet's own), while the model's requirements are set by calcinet."""

    LOGGERS = ("mlflow.pytorch", "mlflow.utils.uv_utils")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "Pickle" not in message and not message.startswith("Detected uv project")


#: The registry alias every new version gets (moved to the newest).
CANDIDATE_ALIAS = "candidate"
#: The model version description's limit in MLflow's SQL stores (characters).
DESCRIPTION_LIMIT = 5000


def _signature(patch_size: list[int]) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    # The input stays unnamed: a named tensor input makes pyfunc demand a dict.
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 1, *patch_size))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1,), "malignancy_probability")]),
    )


def signature_description(metadata: dict[str, Any]) -> str:
    """Units, orientation, spacing and shapes of the signature, in one sentence."""
    inp = metadata["input"]
    x, y, z = inp["patch_size"]
    return (f"input float32 [N, 1, {x}, {y}, {z}] (x, y, z): raw CT in HU (not windowed), "
            f"voxel axes in {inp['orientation']} orientation, spacing {inp['spacing_mm']} mm, "
            f"outside the scan {inp['pad_value_hu']:g} HU; output float32 [N]: probability of "
            f"{metadata['class_names'][1]!r} (calibrated; {metadata['decision']['rule']}, "
            f"threshold {metadata['decision']['threshold']:.4f})")


def registration_decision(options: MlflowOptions, metadata: dict[str, Any]) -> str | None:
    """None to register, else why not (the note the export prints)."""
    if not options.register_as:
        return "mlflow.register_as=null: not registered"
    if options.register is False:
        return "mlflow.register=false: not registered"
    debug = (metadata.get("card") or {}).get("debug")
    if options.register is None and debug:
        return (f"not registered: the checkpoint comes from a debug run (debug={debug}); "
                "mlflow.register=true registers it")
    return None


def description_text(card: str) -> str:
    """The card as a model version description, cut to MLflow's limit when longer."""
    if len(card) <= DESCRIPTION_LIMIT:
        return card
    tail = ("\n\n(cut to MLflow's limit: the whole card is <model stem>.MODEL_CARD.md beside "
            "the exported model)\n")
    return card[: DESCRIPTION_LIMIT - len(tail)] + tail


def find_versions(client: Any, name: str, checkpoint_sha256: str) -> list[Any]:
    """The registered versions of ``name`` exported from the checkpoint with this SHA-256."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return []
    return [v for v in versions if v.tags.get("calcinet.checkpoint_sha256") == checkpoint_sha256]


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

    from calcinet.export.card import CARD_EXTRA_FILE, render
    from calcinet.tracking import ensure_experiment, fluent_tracking_uri, is_remote

    training = metadata.get("training", {})
    uri = resolve_uri(options, training.get("mlflow_tracking_uri"))
    outcome.tracking_uri = uri
    problem = unreachable(uri)
    if problem:
        outcome.notes.append(f"MLflow tracking store not reachable: {problem}; not logged")
        return outcome
    client = MlflowClient(uri)
    run_id = training.get("mlflow_run_id")
    status = end_time = None
    if run_id:
        try:
            found = client.get_run(run_id)
            status, end_time = found.info.status, found.info.end_time
            ensure_experiment(client, client.get_experiment(found.info.experiment_id).name)
        except MlflowException:
            outcome.notes.append(f"the checkpoint's run {run_id} is not in {uri}")
            run_id = None
    else:
        outcome.notes.append("the checkpoint names no MLflow run")
    if run_id is None:
        if not options.new_run:
            outcome.notes.append("mlflow.new_run=false: not logged to MLflow")
            return outcome
        # artifacts beside the store, as calcinet-train puts them
        location = None if is_remote(uri) else str((Path.cwd() / "mlartifacts").resolve())
        experiment_id = ensure_experiment(client, options.experiment_name, location)
        run_id = client.create_run(
            experiment_id, run_name=f"export-{torchscript.stem}", tags={"calcinet.kind": "export"}
        ).info.run_id
        status = "FINISHED"
        outcome.notes.append(f"logged into a new run of experiment {options.experiment_name!r}")
    outcome.run_id = run_id

    hide = _HideInapplicable()
    for name in hide.LOGGERS:
        logging.getLogger(name).addFilter(hide)
    fluent = contextlib.ExitStack()  # the fluent API on this store until the end
    fluent.enter_context(fluent_tracking_uri(uri))
    try:
        with quiet_torchscript():
            module = torch.jit.load(str(torchscript), map_location="cpu")
        patch_size = metadata["input"]["patch_size"]
        card = render(metadata)
        mlflow.start_run(run_id=run_id)
        try:
            with tempfile.TemporaryDirectory() as folder:
                sidecar = Path(folder) / METADATA_FILE
                sidecar.write_text(dumps(metadata))
                card_file = Path(folder) / CARD_EXTRA_FILE
                card_file.write_text(card)
                with quiet_torchscript():
                    info = mlflow.pytorch.log_model(
                        module,
                        name="model",
                        serialization_format="pickle",
                        signature=_signature(patch_size),
                        metadata={"calcinet": metadata,
                                  "signature_description": signature_description(metadata)},
                        extra_files=[str(sidecar), str(card_file)],
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
            if end_time is not None:
                # Reopening the training run moved its end to now; its duration is training's.
                client.set_terminated(run_id, status or "FINISHED", end_time=end_time)
        outcome.logged = True
        outcome.model_uri = info.model_uri
        why_not = registration_decision(options, metadata)
        if why_not:
            outcome.notes.append(why_not)
        else:
            decision = metadata["decision"]
            tags = {
                "calcinet.threshold": decision["threshold"],
                "calcinet.config_hash": training.get("config_hash"),
                "calcinet.data_fingerprint": training.get("data_fingerprint"),
                "calcinet.checkpoint_sha256": training.get("checkpoint_sha256"),
                "calcinet.training_data": (metadata.get("card") or {}).get(
                    "training_data", {}).get("kind"),
            }
            try:
                version = mlflow.register_model(
                    info.model_uri,
                    options.register_as,
                    tags={k: str(v) for k, v in tags.items() if v is not None},
                )
                client.update_model_version(options.register_as, version.version,
                                            description=description_text(card))
                client.set_registered_model_alias(options.register_as, CANDIDATE_ALIAS,
                                                  version.version)
                outcome.registered = (f"{options.register_as} version {version.version} "
                                      f"(alias {CANDIDATE_ALIAS})")
                outcome.version = str(version.version)
            except MlflowException as error:
                outcome.notes.append(
                    f"not registered as {options.register_as!r}: "
                    f"{str(error.message).splitlines()[0]}"
                )
    finally:
        fluent.close()
        for name in hide.LOGGERS:
            logging.getLogger(name).removeFilter(hide)
    return outcome
