"""Logging the export to MLflow: into the training run, registered, loadable by pyfunc."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from calcinet.export import ExportResult, MlflowOptions
from calcinet.export.mlflow_model import log_export
from calcinet.tracking import fluent_tracking_uri


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
    assert outcome.registered == "calcinet-test version 1 (alias candidate)"
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "export")}
    assert artifacts == {"export/model.ts", "export/model.pt2"}

    with fluent_tracking_uri(tmp_tracking):
        served = mlflow.pyfunc.load_model("models:/calcinet-test/1")
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


def _training_run(client: MlflowClient, tmp_path: Path, end_time: int) -> str:
    experiment = client.create_experiment("calcinet", str(tmp_path / "artifacts"))
    run_id = client.create_run(experiment, start_time=end_time - 60_000).info.run_id
    client.set_terminated(run_id, "FINISHED", end_time=end_time)
    return run_id


def test_export_keeps_the_training_runs_end_and_tags_the_experiment(
    tiny_export: ExportResult, tmp_tracking: str, tmp_path: Path
) -> None:
    from calcinet.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

    client = MlflowClient(tmp_tracking)
    end_time = 1_700_000_000_000
    run_id = _training_run(client, tmp_path, end_time)
    metadata = copy.deepcopy(tiny_export.metadata)
    metadata["training"]["mlflow_run_id"] = run_id
    metadata["training"]["mlflow_tracking_uri"] = tmp_tracking
    outcome = log_export(tiny_export.torchscript, None, metadata, MlflowOptions(register_as=None))
    assert outcome.logged, outcome.notes
    assert outcome.run_id == run_id  # reopened the training run, as a real export does
    info = client.get_run(run_id).info
    assert (info.status, info.end_time, info.start_time) == ("FINISHED", end_time,
                                                             end_time - 60_000)
    # The experiment existed without the tag: calcinet sets it when it logs there.
    experiment = client.get_experiment_by_name("calcinet")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"


def test_new_experiment_is_created_with_the_kind_tag(
    tiny_export: ExportResult, tmp_tracking: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    outcome = log_export(tiny_export.torchscript, None, tiny_export.metadata,
                         MlflowOptions(experiment_name="fresh", register_as=None))
    assert outcome.logged, outcome.notes
    tags = MlflowClient(tmp_tracking).get_experiment_by_name("fresh").tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"


def test_debug_run_is_not_registered_unless_asked(
    tiny_export: ExportResult, tmp_tracking: str, tmp_path: Path
) -> None:
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tmp_tracking)
    metadata = copy.deepcopy(tiny_export.metadata)
    metadata["training"]["mlflow_run_id"] = _training_run(client, tmp_path, 1_700_000_000_000)
    metadata["card"]["debug"] = "smoke"
    outcome = log_export(tiny_export.torchscript, None, metadata, MlflowOptions())
    assert outcome.logged and outcome.registered is None
    assert ("not registered: the checkpoint comes from a debug run (debug=smoke); "
            "mlflow.register=true registers it") in outcome.notes
    with pytest.raises(MlflowException):
        client.get_registered_model("calcinet")
    outcome = log_export(tiny_export.torchscript, None, metadata, MlflowOptions(register=False))
    assert "mlflow.register=false: not registered" in outcome.notes
    outcome = log_export(tiny_export.torchscript, None, metadata, MlflowOptions(register=True))
    assert outcome.registered == "calcinet version 1 (alias candidate)"


def test_each_version_gets_the_card_and_the_candidate_alias_moves(
    tiny_export: ExportResult, tmp_tracking: str, tmp_path: Path
) -> None:
    from calcinet.export.card import render

    client = MlflowClient(tmp_tracking)
    metadata = copy.deepcopy(tiny_export.metadata)
    metadata["training"]["mlflow_run_id"] = _training_run(client, tmp_path, 1_700_000_000_000)
    first = log_export(tiny_export.torchscript, None, metadata, MlflowOptions())
    assert first.version == "1"
    assert str(client.get_model_version_by_alias("calcinet", "candidate").version) == "1"
    second = log_export(tiny_export.torchscript, None, metadata, MlflowOptions())
    assert second.version == "2"
    version = client.get_model_version_by_alias("calcinet", "candidate")
    assert str(version.version) == "2"
    assert client.get_model_version("calcinet", "1").aliases == []
    assert version.description == render(metadata)
    assert version.tags["calcinet.checkpoint_sha256"] == \
        metadata["training"]["checkpoint_sha256"]
    assert version.tags["calcinet.training_data"] == metadata["card"]["training_data"]["kind"]


def test_mlflow_messages_that_do_not_apply_to_the_model_stay_off_the_terminal(
    tiny_export: ExportResult, tmp_tracking: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
) -> None:
    # Run from a uv project (as from a calcinet checkout): MLflow announces it at INFO, and
    # mlflow.pytorch warns about pickle, which a TorchScript file does not use.
    project = tmp_path / "project"
    project.mkdir()
    (project / "uv.lock").write_text("version = 1\n")
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\nversion = '0'\n")
    monkeypatch.chdir(project)
    outcome = log_export(tiny_export.torchscript, None, copy.deepcopy(tiny_export.metadata),
                         MlflowOptions())
    assert outcome.logged, outcome.notes
    printed = "".join(capfd.readouterr())
    assert "Detected uv project" not in printed and "ickle" not in printed, printed
