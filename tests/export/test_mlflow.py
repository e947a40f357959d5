"""Logging the export to MLflow: into the training run, registered, loadable by pyfunc."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from mlflow.tracking import MlflowClient

from calcinet.export import ExportResult, MlflowOptions
from calcinet.export.mlflow_model import log_export


def test_logs_into_the_checkpoints_run_and_registers(
    tiny_export: ExportResult, tmp_tracking: str, tmp_path: Path
) -> None:
    import mlflow

    client = MlflowClient(tmp_tracking)
    experiment = client.create_experiment("calcinet", str(tmp_path / "artifacts"))
    run = client.create_run(experiment)
    client.set_terminated(run.info.run_id, "FINISHED")
    metadata = copy.deepcopy(tiny_export.metadata)
    metadata["training"]["mlflow_run_id"] = run.info.run_id
    metadata["training"]["mlflow_tracking_uri"] = "sqlite:///elsewhere.db"  # the env var wins

    outcome = log_export(
        tiny_export.torchscript,
        tiny_export.program,
        metadata,
        MlflowOptions(register_as="calcinet-test"),
    )
    assert outcome.logged, outcome.notes
    assert outcome.run_id == run.info.run_id and outcome.tracking_uri == tmp_tracking
    assert outcome.registered == "calcinet-test version 1"
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "export")}
    assert artifacts == {"export/model.ts", "export/model.pt2"}

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tmp_tracking)
    try:
        served = mlflow.pyfunc.load_model("models:/calcinet-test/1")
    finally:
        mlflow.set_tracking_uri(previous)
    hu = np.random.default_rng(0).uniform(-1000, 2000, (2, 1, 24, 24, 24)).astype(np.float32)
    with torch.no_grad():
        expected = torch.jit.load(str(tiny_export.torchscript))(torch.from_numpy(hu)).numpy()
    np.testing.assert_allclose(served.predict(hu), expected, atol=1e-6)
    assert served.metadata.metadata["calcinet"]["decision"] == metadata["decision"]


def test_unreachable_store_and_disabled_logging_are_notes(
    tiny_export: ExportResult, monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    outcome = log_export(tiny_export.torchscript, None, tiny_export.metadata, MlflowOptions())
    assert not outcome.logged
    assert outcome.notes[0].startswith("MLflow tracking store not reachable: http://127.0.0.1:9")
    outcome = log_export(
        tiny_export.torchscript, None, tiny_export.metadata, MlflowOptions(enabled=False)
    )
    assert outcome.notes == ["mlflow.enabled=false: not logged to MLflow"]


def test_no_run_id_and_new_run_false_skips(
    tiny_export: ExportResult, tmp_tracking: str, tmp_path: Path
) -> None:
    outcome = log_export(
        tiny_export.torchscript, None, tiny_export.metadata, MlflowOptions(new_run=False)
    )
    assert not outcome.logged
    assert outcome.notes == [
        "the checkpoint names no MLflow run",
        "mlflow.new_run=false: not logged to MLflow",
    ]
