"""Resume after a kill, identical reruns, atomic checkpoints."""

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

from tests.helpers import compose_config, run_cli
from tests.scaling.conftest import TINY


def _train_command(run_dir: Path, *extra: str) -> list[str]:
    bin_dir = Path(sys.executable).parent
    return [str(bin_dir / "calcinet-train"), *TINY, f"hydra.run.dir={run_dir}", *extra]


@pytest.mark.slow
def test_sigkill_then_resume_continues_the_same_run_and_folder(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "HYDRA_FULL_ERROR": "1"}
    run_dir = tmp_path / "run"
    epochs = 5
    args = [f"trainer.max_epochs={epochs}", "data.source.num_train=64",
            "data.patch_size=[24,24,24]"]
    process = subprocess.Popen(_train_command(run_dir, *args), cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let the epoch's last metrics reach MLflow, then kill mid-epoch
    assert process.poll() is None, "training finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    killed_at = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
    assert killed_at < epochs - 1

    result = run_cli(["calcinet-train", *TINY, f"hydra.run.dir={run_dir}", *args, "resume=true"],
                     cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert result.returncode == 0, result.stderr[-4000:]
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == epochs - 1

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("calcinet")
    (run,) = client.search_runs([experiment.experiment_id])
    assert (run_dir / "mlflow_run_id.txt").read_text().strip() == run.info.run_id
    assert run.info.status == "FINISHED"
    for name in ("val/auroc", "train/loss"):
        history = client.get_metric_history(run.info.run_id, name)
        steps = [m.step for m in history]
        assert len(history) == epochs and len(set(steps)) == epochs, (name, steps)
    # Lightning logs `epoch` twice per epoch (with the validation and the training metrics).
    epochs_logged = sorted({m.value for m in client.get_metric_history(run.info.run_id, "epoch")})
    assert epochs_logged == [float(e) for e in range(epochs)]


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
