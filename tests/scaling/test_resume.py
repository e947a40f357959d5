"""Resume after SIGKILL or SIGTERM, identical reruns, atomic checkpoints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.helpers import DEBUG_EXPERIMENT, compose_config, run_cli
from tests.scaling.conftest import TINY


def _train_command(run_dir: Path, *extra: str) -> list[str]:
    bin_dir = Path(sys.executable).parent
    return [str(bin_dir / "calcinet-train"), *TINY, f"hydra.run.dir={run_dir}", *extra]


#: A folder whose sitecustomize.py makes a calcinet-train process SIGKILL itself at one exact
#: point of an epoch (CALCINET_KILL_AT), so kills land on a chosen side of a window.
KILL_HOOK = Path(__file__).parent / "kill_hook"


def _signal_after_first_epoch(command: list[str], cwd: Path, env: dict[str, str], last: Path,
                              sig: signal.Signals) -> tuple[int, float, str]:
    """Start training, send ``sig`` once ``last`` exists and the next epoch has begun; return
    the exit status, the seconds from the signal to the exit, and the process's output."""
    log = cwd / f"interrupted_{sig.name}.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 240
            while not last.exists() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert last.exists(), "no last.ckpt: " + log.read_text()[-3000:]
            time.sleep(0.3)  # into the next epoch (they take a few tenths of a second here)
            assert process.poll() is None, "training ended before the signal: " + \
                log.read_text()[-3000:]
            process.send_signal(sig)
            sent = time.monotonic()
            returncode = process.wait(timeout=60)
            return returncode, time.monotonic() - sent, log.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def _epochs_logged(client: MlflowClient, run_id: str, name: str) -> list[int]:
    """The epoch of every logged value of ``name``, in step order (from the ``epoch`` metric
    logged with it)."""
    epoch_at = {m.step: int(m.value) for m in client.get_metric_history(run_id, "epoch")}
    history = sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)
    return [epoch_at[m.step] for m in history]


def _resume_and_check(tmp_path: Path, run_dir: Path, uri: str, args: list[str],
                      epochs: int) -> None:
    """Resume the run of ``run_dir``: it finishes in the same folder and MLflow run, and every
    epoch is logged exactly once."""
    client = MlflowClient(tracking_uri=uri)
    result = run_cli(["calcinet-train", *TINY, f"hydra.run.dir={run_dir}", *args, "resume=true"],
                     cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri}, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == epochs - 1
    assert f"Run folder:       {run_dir.resolve()}" in result.stdout
    assert not (tmp_path / "outputs").exists()  # no second run folder
    assert not list((run_dir / "checkpoints").glob("last-v*.ckpt"))
    experiment = client.get_experiment_by_name(DEBUG_EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id])
    assert (run_dir / "mlflow_run_id.txt").read_text().strip() == run.info.run_id
    assert run.info.status == "FINISHED"
    for name in ("val/auroc", "val/loss", "train/loss", "lr-AdamW"):
        assert _epochs_logged(client, run.info.run_id, name) == list(range(epochs)), name


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("where", ["before_commit", "after_commit"])
def test_sigkill_on_either_side_of_an_epochs_commit_then_resume(
    tmp_path: Path, where: str
) -> None:
    """SIGKILL right after epoch 1's last.ckpt is written, before or after its metrics reach
    MLflow: resume logs epoch 1 from the checkpoint (before) or not again (after)."""
    from calcinet.training.module import CalciModule

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = tmp_path / "run"
    epochs = 4
    args = [f"trainer.max_epochs={epochs}"]
    path = os.pathsep.join([str(KILL_HOOK), os.environ.get("PYTHONPATH", "")])
    killed = run_cli(["calcinet-train", *TINY, f"hydra.run.dir={run_dir}", *args], cwd=tmp_path,
                     env={"MLFLOW_TRACKING_URI": uri, "PYTHONPATH": path,
                          "CALCINET_KILL_AT": f"{where}:1"}, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 1
    CalciModule.load_from_checkpoint(last, map_location="cpu")  # a whole, loadable checkpoint
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name(DEBUG_EXPERIMENT).experiment_id])
    assert run.info.status == "RUNNING"
    logged = _epochs_logged(client, run.info.run_id, "val/auroc")
    assert logged == ([0] if where == "before_commit" else [0, 1])
    _resume_and_check(tmp_path, run_dir, uri, args, epochs)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_sigterm_then_resume_continues_the_same_run_and_folder(tmp_path: Path) -> None:
    """SIGTERM (a scheduler's pre-emption): Lightning finishes the batch, calcinet marks the
    run KILLED, exits with 128 + 15 and says how to continue; resume finishes the run."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "HYDRA_FULL_ERROR": "1"}
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    epochs = 5
    args = [f"trainer.max_epochs={epochs}", "data.source.num_train=64",
            "data.patch_size=[24,24,24]"]
    returncode, seconds, output = _signal_after_first_epoch(
        _train_command(run_dir, *args), tmp_path, env, last, signal.SIGTERM)
    assert returncode == 128 + signal.SIGTERM, output[-3000:]
    assert seconds < 30, f"{seconds:.1f} s from SIGTERM to the exit"
    stopped_at = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
    assert stopped_at < epochs - 1
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name(DEBUG_EXPERIMENT).experiment_id])
    assert run.info.status == "KILLED"
    # Stopped inside the epoch after last.ckpt's: nothing of it reached MLflow.
    assert f"stopped by SIGTERM in epoch {stopped_at + 1};" in output, output[-3000:]
    assert "resume=true" in output and f"hydra.run.dir={run_dir.resolve()}" in output
    assert _epochs_logged(client, run.info.run_id, "val/auroc") == list(range(stopped_at + 1))
    _resume_and_check(tmp_path, run_dir, uri, args, epochs)


@pytest.mark.slow
def test_same_seed_and_config_give_identical_metrics(tmp_path: Path, tmp_tracking: str) -> None:
    from calcinet.training.run import train

    results = []
    for name in ("a", "b"):
        cfg = compose_config("train", [*TINY, "trainer.deterministic=true",
                                       "seed=5"], run_dir=tmp_path / name)
        results.append(train(cfg))
    assert results[0] == results[1]
    assert "val/auroc" in results[0]


def test_checkpoint_is_replaced_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save that dies half-way leaves the previous file intact (and no final-name file)."""
    from calcinet.training.callbacks import ModelCheckpoint

    target = tmp_path / "last.ckpt"
    target.write_bytes(b"previous")

    class Trainer:
        is_global_zero = True
        global_step = 3
        loggers: list = []

        class strategy:  # noqa: N801
            @staticmethod
            def barrier(name: str) -> None:
                pass

        def save_checkpoint(self, path: str, weights_only: bool = False) -> None:
            Path(path).write_bytes(b"half")
            raise KeyboardInterrupt("killed while writing")

    callback = ModelCheckpoint(dirpath=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        callback._save_checkpoint(Trainer(), str(target))
    assert target.read_bytes() == b"previous"

    Trainer.save_checkpoint = lambda self, path, weights_only=False: Path(path).write_bytes(b"new")
    callback._save_checkpoint(Trainer(), str(target))
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".last.ckpt.tmp", "last.ckpt"] or \
        sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
