"""Training and evaluation against a real `mlflow server`; a server that is down or goes away."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.helpers import DEBUG_EXPERIMENT, compose_config, run_cli
from tests.scaling.conftest import TINY, Server, free_port, start_server


class StopServerAfterFirstEpoch(L.Callback):
    """Kills the tracking server (by process id) at the end of the first training epoch."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 0:
            import os
            import signal

            os.killpg(self.pid, signal.SIGKILL)  # the server and its uvicorn workers
            time.sleep(0.5)


@pytest.mark.slow
def test_training_and_evaluation_log_to_a_real_server(
    mlflow_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from calcinet.training.run import train

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    run_dir = tmp_path / "run"
    cfg = compose_config("train", [*TINY, "logger.mlflow.experiment_name=remote"],
                         run_dir=run_dir)
    metrics = train(cfg)
    run_id = (run_dir / "mlflow_run_id.txt").read_text().strip()

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["best/val_auroc"] == pytest.approx(metrics["best/val_auroc"])
    assert len(client.get_metric_history(run_id, "val/auroc")) == 2
    logged = [a.path for a in client.list_artifacts(run_id, "checkpoints")]
    assert len(logged) == 1 and logged[0].endswith(".ckpt")
    # The artifact went through the server into its --artifacts-destination.
    assert list((mlflow_server.folder / "artifacts").rglob("*.ckpt"))

    best = next(p for p in (run_dir / "checkpoints").glob("epoch*.ckpt"))
    result = run_cli(
        ["calcinet-evaluate", f"ckpt_path='{best}'", "data.source.num_test=8",
         "data.patch_size=[16,16,16]", "data.spacing=[2.0,2.0,2.0]", "bootstrap.n=20",
         f"hydra.run.dir={tmp_path / 'eval'}"],
        cwd=tmp_path, env={"MLFLOW_TRACKING_URI": mlflow_server.uri},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    children = client.search_runs([run.info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{run_id}'")
    assert len(children) == 1 and children[0].data.tags.get("calcinet.evaluation") == "true"


@pytest.mark.slow
def test_unreachable_server_fails_fast_naming_the_uri(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = run_cli(["calcinet-train", *TINY, f"hydra.run.dir={tmp_path / 'run'}"],
                     cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert result.returncode == 2, result.stderr[-3000:]
    assert uri in result.stderr and "on_unreachable=local" in result.stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unreachable_server_can_fall_back_to_the_local_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from calcinet.tracking import build_mlflow_logger

    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    logger = build_mlflow_logger(root_dir=tmp_path, on_unreachable="local")
    assert logger._tracking_uri == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    assert "mlflow.db" in caplog.text  # the warning, on the calcinet logger


@pytest.mark.slow
def test_server_lost_mid_run_training_continues_and_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from calcinet.training.run import train

    server = start_server(tmp_path / "server")
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        run_dir = tmp_path / "run"
        cfg = compose_config(
            "train",
            [*TINY, "trainer.max_epochs=3",
             "+callbacks.stop_server._target_=tests.scaling.test_remote.StopServerAfterFirstEpoch",
             f"+callbacks.stop_server.pid={server.process.pid}"],
            run_dir=run_dir,
        )
        with pytest.warns(RuntimeWarning, match="training continues"):
            metrics = train(cfg)
    finally:
        server.stop()
    assert "best/val_auroc" in metrics
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)
    assert last["epoch"] == 2


def _hold_write_lock(database: Path) -> subprocess.Popen:
    """Another process holding ``database``'s SQLite write lock until it is killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time\n"
         f"c = sqlite3.connect({str(database)!r}, isolation_level=None)\n"
         "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.slow
def test_a_locked_store_is_named_in_one_line_and_can_fall_back_to_the_run_folder(
    tmp_path: Path,
) -> None:
    database = tmp_path / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{database}").create_experiment(DEBUG_EXPERIMENT)
    holder = _hold_write_lock(database)
    try:
        started = time.monotonic()
        refused = run_cli(["calcinet-train", *TINY, "logger.mlflow.lock_wait_s=2",
                           f"hydra.run.dir={tmp_path / 'refused'}"], cwd=tmp_path)
        waited = time.monotonic() - started
        assert refused.returncode == 2, refused.stderr[-3000:]
        (line,) = [text for text in refused.stderr.splitlines() if "calcinet: error" in text]
        assert f"sqlite:///{database.resolve()}" in line and "locked" in line
        assert "on_unreachable=local" in line and "Traceback" not in refused.stderr
        assert waited < 60  # MLflow alone waits ~20 s per call and retries for over a minute
        assert not (tmp_path / "refused" / "checkpoints").exists()

        run_dir = tmp_path / "fallback"
        trained = run_cli(["calcinet-train", *TINY, "logger.mlflow.lock_wait_s=1",
                           "logger.mlflow.on_unreachable=local", f"hydra.run.dir={run_dir}"],
                          cwd=tmp_path)
        assert trained.returncode == 0, trained.stderr[-3000:]
        local = f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"
        assert local in trained.stderr and "locked" in trained.stderr
    finally:
        holder.kill()
        holder.wait()
    client = MlflowClient(tracking_uri=local)
    (run,) = client.search_runs([client.get_experiment_by_name(DEBUG_EXPERIMENT).experiment_id])
    assert run.info.status == "FINISHED" and "best/val_auroc" in run.data.metrics
    main_store = MlflowClient(tracking_uri=f"sqlite:///{database}")
    main_experiment = main_store.get_experiment_by_name(DEBUG_EXPERIMENT)
    assert main_store.search_runs([main_experiment.experiment_id]) == []


def test_parameters_are_logged_whole_up_to_mlflows_limit_and_cut_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    from calcinet.tracking import build_mlflow_logger

    logger = build_mlflow_logger(root_dir=tmp_path, tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    folder = "/data/" + "x" * 400
    huge = "y" * (MAX_PARAM_VAL_LENGTH + 10)
    with pytest.warns(RuntimeWarning, match=f"data.huge is {len(huge)} characters"):
        logger.log_hyperparams({"paths.output_dir": folder, "data.huge": huge})
    params = MlflowClient(tracking_uri=logger._tracking_uri).get_run(logger.run_id).data.params
    assert params["paths.output_dir"] == folder
    assert params["data.huge"] == huge[:MAX_PARAM_VAL_LENGTH]
    assert "config.yaml" in caplog.text
