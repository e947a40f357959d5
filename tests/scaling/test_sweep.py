"""`-m hparams_search=optuna`: trials nested under one parent MLflow run, best trial reported."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.helpers import compose_config, run_cli
from tests.scaling.conftest import TINY


def test_optuna_search_composes_over_existing_keys(tmp_path: Path) -> None:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    cfg = compose_config("train", ["hparams_search=optuna"], run_dir=tmp_path)
    sweeper = HydraConfig.get().sweeper
    assert sweeper.direction == ("maximize" if cfg.monitor.mode == "max" else "minimize")
    for key in sweeper.params:  # every searched key exists in the training config
        assert OmegaConf.select(cfg, key, default="missing") != "missing", key


@pytest.mark.slow
def test_optuna_sweep_nests_trials_under_one_parent(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep_dir = tmp_path / "sweep"
    result = run_cli(["calcinet-train", "-m", "hparams_search=optuna", *TINY,
                      "trainer.max_epochs=1", "hydra.sweeper.n_trials=2",
                      f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path,
                     env={"MLFLOW_TRACKING_URI": uri})
    assert result.returncode == 0, result.stderr[-4000:]

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("calcinet").experiment_id])
    (parent,) = [r for r in runs if "calcinet.parent_key" in r.data.tags]
    assert parent.data.tags["calcinet.parent_key"] == str(sweep_dir.resolve())
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(trials) == 2 and len(runs) == 3
    scores = {r.info.run_id: r.data.metrics["best/val_auroc"] for r in trials}
    best_id = max(scores, key=scores.get)
    assert parent.data.metrics["best/val_auroc"] == pytest.approx(scores[best_id])
    assert parent.data.tags["calcinet.best_run_id"] in {
        i for i, s in scores.items() if s == scores[best_id]}
    optuna = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert optuna["best_value"] == pytest.approx(scores[best_id])
