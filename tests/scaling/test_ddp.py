"""Two-process DDP on the CPU (gloo): one run folder, one MLflow run, metrics over all ranks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from tests.helpers import DEBUG_EXPERIMENT, compose_config, run_cli
from tests.scaling.conftest import TINY

#: Two ranks on the CPU; ranks see 10 of the 20 validation findings each.
DDP = [*TINY, "data.source.num_val=20", "trainer=ddp", "trainer.devices=2",
       "trainer.accelerator=cpu"]


def _assert_auroc_of_whole_val_split(logged: float, checkpoint: Path, scratch: Path) -> None:
    """``logged`` is the AUROC of all 20 validation findings under the weights of
    ``checkpoint`` (recomputed in one process), not that of one rank's share."""
    from hydra.utils import instantiate

    from calcinet.training.module import CalciModule

    module = CalciModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    datamodule = instantiate(compose_config("train", DDP, run_dir=scratch).data)
    datamodule.setup("validate")
    assert len(datamodule.datasets["val"]) == 20
    labels, scores = [], []
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            scores += module.probability(batch["image"]).tolist()  # calibrated, float32
            labels += batch["label"].tolist()
    assert logged == pytest.approx(roc_auc_score(labels, scores), abs=1e-5)


def _only_run(uri: str, run_dir: Path) -> str:
    """The id of the experiment's one MLflow run, FINISHED and named by ``run_dir``."""
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(DEBUG_EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert (run_dir / "mlflow_run_id.txt").read_text().strip() == run.info.run_id
    return run.info.run_id


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_ddp_two_cpu_processes_one_folder_one_run_global_auroc(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    outputs = tmp_path / "outputs"
    result = run_cli(["calcinet-train", *DDP, f"paths.log_dir={outputs}"], cwd=tmp_path,
                     env={"MLFLOW_TRACKING_URI": uri}, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]

    # Hydra made one run folder (debug runs go to outputs/debug/runs); the workers did not
    # re-run the command line.
    (run_dir,) = list((outputs / "debug" / "runs").iterdir())
    assert not (outputs / "train" / "multiruns").exists()
    run_id = _only_run(uri, run_dir)
    history = MlflowClient(tracking_uri=uri).get_metric_history(run_id, "val/auroc")
    assert len(history) == 2  # rank 0 only
    # last.ckpt holds the weights of the final validation.
    _assert_auroc_of_whole_val_split(history[-1].value, run_dir / "checkpoints" / "last.ckpt",
                                     tmp_path / "x")


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_torchrun_two_cpu_ranks_one_folder_one_run_global_auroc(tmp_path: Path) -> None:
    """torchrun starts both ranks (each runs the whole command); calcinet uses plain ``ddp``."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # a new store: only rank 0 may create it
    run_dir = tmp_path / "run"
    bin_dir = Path(sys.executable).parent
    command = [str(bin_dir / "torchrun"), "--standalone", "--nproc_per_node=2",
               str(bin_dir / "calcinet-train"), *DDP, f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "HYDRA_FULL_ERROR": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    # Two processes in all: torchrun's, not two more spawned by each of them.
    # Lightning's messages reach the run's report (stdout) through logging.
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in result.stdout + result.stderr
    assert result.stdout.count("Run folder:") == 1  # the summary comes from rank 0 alone

    # One run folder (the fixed one) with one best and one last checkpoint, no temporary
    # files left by a second writer, and the best one uploaded once.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlartifacts", "mlflow.db", "run"]
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert len(checkpoints) == 3 and {"best.ckpt", "last.ckpt"} <= set(checkpoints), checkpoints
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 1

    run_id = _only_run(uri, run_dir)
    client = MlflowClient(tracking_uri=uri)
    assert [a.path for a in client.list_artifacts(run_id, "checkpoints")] == \
        [f"checkpoints/{name}" for name in checkpoints if name.startswith("epoch")]
    history = client.get_metric_history(run_id, "val/auroc")
    assert len({m.step for m in history}) == len(history) == 2  # rank 0 only, once per epoch
    _assert_auroc_of_whole_val_split(history[-1].value, last, tmp_path / "x")


def _spawned_workers(pid: int) -> set[int]:
    """The pids of the live ``multiprocessing`` spawn workers whose parent is ``pid`` (from
    /proc; multiprocessing's resource tracker, also a child, is left out)."""
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines()
                          if ":\t" in line)
        except OSError:  # the process ended while we looked
            continue
        if int(fields.get("PPid", "0").strip()) != pid or fields.get("State", "").startswith("Z"):
            continue
        with contextlib.suppress(OSError):
            if b"spawn_main" in (status.parent / "cmdline").read_bytes():
                found.add(int(status.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.timeout(500)
def test_sigterm_to_the_spawning_process_stops_its_workers_and_resume_finishes(
    tmp_path: Path,
) -> None:
    """``kill PID`` of ``calcinet-train trainer=ddp``: the spawned workers stop too, the run is
    KILLED with a resumable last.ckpt, and ``resume=true`` completes it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    epochs = 4
    args = [*DDP, "data.source.num_train=64", f"trainer.max_epochs={epochs}",
            f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "HYDRA_FULL_ERROR": "1"}
    log = tmp_path / "interrupted.log"
    with log.open("w") as out:
        process = subprocess.Popen([str(Path(sys.executable).parent / "calcinet-train"), *args],
                                   cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while not last.exists() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert last.exists(), log.read_text()[-3000:]
            workers = _spawned_workers(process.pid)
            assert len(workers) == 2, workers  # the two ranks
            process.send_signal(signal.SIGTERM)  # to the launching process only
            returncode = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    output = log.read_text()
    assert returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "calcinet: stopped by SIGTERM; " in output and "resume=true" in output
    alive = {pid for pid in workers if Path(f"/proc/{pid}").exists()}
    assert not alive, f"workers {alive} outlived the launching process"
    stopped_at = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
    assert stopped_at < epochs - 1

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(DEBUG_EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "KILLED"

    result = run_cli(["calcinet-train", *args, "resume=true"], cwd=tmp_path,
                     env={"MLFLOW_TRACKING_URI": uri}, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == epochs - 1
    run_id = _only_run(uri, run_dir)
    steps = [m.step for m in client.get_metric_history(run_id, "val/auroc")]
    assert len(steps) == len(set(steps)) == epochs  # each epoch validated once
