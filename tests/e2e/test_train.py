"""The real entry point, end to end: `calcinet-train debug=smoke` with a private MLflow store."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.helpers import DEBUG_EXPERIMENT, run_cli

EPOCH_METRICS = ("train/loss", "val/loss", "val/auroc", "val/accuracy", "val/sensitivity",
                 "val/specificity", "val/f1", "val/ap", "val/threshold", "val/temperature",
                 "lr-AdamW")


@pytest.mark.slow
def test_smoke_run_writes_checkpoints_and_logs_to_mlflow(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = tmp_path / "run"
    result = run_cli(
        ["calcinet-train", "debug=smoke", f"hydra.run.dir={run_dir}", "seed=3"],
        cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri},
    )
    assert result.returncode == 0, result.stderr[-4000:]

    # Everything the run writes lives in its Hydra run folder.
    checkpoints = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    names = {p.name for p in checkpoints}
    assert {"last.ckpt", "best.ckpt"} <= names and len(names) == 3, names
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / ".hydra" / "overrides.yaml").is_file()
    best = next(p for p in checkpoints if p.name.startswith("epoch"))
    assert (run_dir / "checkpoints" / "best.ckpt").read_bytes() == best.read_bytes()
    hparams = torch.load(best, map_location="cpu", weights_only=False)["hyper_parameters"]
    assert hparams["preprocessing"]["patch_size"] == [48, 48, 48]
    assert f"Best checkpoint:  {run_dir / 'checkpoints' / 'best.ckpt'} (val/auroc=" in \
        result.stdout
    assert "mlflow ui --backend-store-uri" in result.stdout

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(DEBUG_EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    for name in EPOCH_METRICS:
        history = client.get_metric_history(run.info.run_id, name)
        assert len(history) == 2, (name, history)  # once per epoch, two epochs
        assert all(math.isfinite(m.value) for m in history), name
    params = run.data.params
    assert params["model.network.name"] == "compact"
    assert params["trainer.max_epochs"] == "2"
    assert params["seed"] == "3"
    assert len(run.data.tags["calcinet.data_fingerprint"]) == 16
    assert run.data.tags["calcinet.debug_config"] == "smoke"
    # Named after its folder (MLflow's random names repeat for runs of one seed).
    assert run.info.run_name == f"{run_dir.parent.name}/{run_dir.name}"
    assert "mlflow.source.git.commit" in run.data.tags
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "checkpoints", "data", "hydra"} <= artifacts
    logged_ckpts = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")]
    assert logged_ckpts == [f"checkpoints/{best.name}"]
    montage = [a.path for a in client.list_artifacts(run.info.run_id, "data")]
    assert montage == ["data/phantom_montage.png"]


@pytest.mark.slow
def test_same_seed_same_data_fingerprint(tmp_path: Path) -> None:
    """The dataset seed is separate from the training seed: changing `seed` keeps the data."""
    from calcinet.data.sources import SyntheticSource

    a = SyntheticSource(num_train=8, num_val=4, num_test=4, seed=0)
    b = SyntheticSource(num_train=8, num_val=4, num_test=4, seed=0)
    c = SyntheticSource(num_train=8, num_val=4, num_test=4, seed=1)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


@pytest.mark.slow
def test_logger_none_trains_without_tracking(tmp_path: Path) -> None:
    """``logger=none`` with the default callbacks (the learning-rate monitor has no logger)."""
    run_dir = tmp_path / "run"
    result = run_cli(
        ["calcinet-train", "debug=smoke", "logger=none", f"hydra.run.dir={run_dir}",
         "trainer.max_epochs=1"],
        cwd=tmp_path, env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "mlflow.db").exists()  # nothing was tracked
    assert not (run_dir / "mlflow_run_id.txt").exists()


@pytest.mark.slow
def test_overfit_and_profile_debug_runs(tmp_path: Path) -> None:
    """debug=overfit drives the training loss of two fixed batches down; debug=profile writes
    Lightning's profile table; both land in outputs/debug/runs, in the calcinet-debug
    experiment."""
    from tests.scaling.conftest import TINY

    tiny = [o for o in TINY if o != "debug=smoke"]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": uri}
    overfit = run_cli(["calcinet-train", "debug=overfit", *tiny, "seed=0"], cwd=tmp_path, env=env)
    assert overfit.returncode == 0, overfit.stderr[-4000:]
    profile = run_cli(["calcinet-train", "debug=profile", *tiny], cwd=tmp_path, env=env)
    assert profile.returncode == 0, profile.stderr[-4000:]

    runs = sorted((tmp_path / "outputs" / "debug" / "runs").iterdir())
    assert len(runs) == 2 and not (tmp_path / "outputs" / "train").exists()
    table = (runs[1] / "fit-profile.txt").read_text()
    assert "run_training_epoch" in table and "Total" in table

    client = MlflowClient(tracking_uri=uri)
    assert client.get_experiment_by_name("calcinet") is None
    found = client.search_runs([client.get_experiment_by_name(DEBUG_EXPERIMENT).experiment_id],
                               order_by=["attributes.start_time ASC"])
    assert [r.data.tags["calcinet.debug_config"] for r in found] == ["overfit", "profile"]
    assert [r.info.run_name for r in found] == [run.name for run in runs]
    losses = [m.value for m in client.get_metric_history(found[0].info.run_id, "train/loss")]
    assert len(losses) == 30
    # The same two batches every epoch: the network memorises them.
    assert min(losses[-3:]) < 0.25 * losses[0], losses
