"""Two-process DDP on the CPU (gloo): one run folder, one MLflow run, metrics over all ranks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from tests.helpers import compose_config, run_cli
from tests.scaling.conftest import TINY


@pytest.mark.slow
def test_ddp_two_cpu_processes_one_folder_one_run_global_auroc(tmp_path: Path) -> None:
    from calcinet.training.module import CalciModule

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    outputs = tmp_path / "outputs"
    overrides = [*TINY, "data.source.num_val=20", "trainer=ddp", "trainer.devices=2",
                 "trainer.accelerator=cpu"]
    result = run_cli(["calcinet-train", *overrides, f"paths.log_dir={outputs}"], cwd=tmp_path,
                     env={"MLFLOW_TRACKING_URI": uri})
    assert result.returncode == 0, result.stderr[-4000:]

    # Hydra made one run folder; the workers did not re-run the command line.
    (run_dir,) = list((outputs / "train" / "runs").iterdir())
    assert not (outputs / "train" / "multiruns").exists()
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("calcinet")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert (run_dir / "mlflow_run_id.txt").read_text().strip() == run.info.run_id
    assert len(client.get_metric_history(run.info.run_id, "val/auroc")) == 2  # rank 0 only

    # The logged AUROC is that of the whole validation split (ranks saw 10 findings each):
    # recompute it from last.ckpt, the weights of the final validation, in one process.
    logged = client.get_metric_history(run.info.run_id, "val/auroc")[-1].value
    module = CalciModule.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt").eval()
    from hydra.utils import instantiate

    datamodule = instantiate(compose_config("train", overrides, run_dir=tmp_path / "x").data)
    datamodule.setup("validate")
    assert len(datamodule.datasets["val"]) == 20
    labels, scores = [], []
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            scores += torch.sigmoid(module(batch["image"])).tolist()
            labels += batch["label"].tolist()
    assert logged == pytest.approx(roc_auc_score(labels, scores), abs=1e-5)
