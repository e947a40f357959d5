"""Every config file in conf/ composes, and the composed trees have what the code expects."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from calcinet.cli import CONFIG_DIR
from calcinet.config import validate_train_config
from calcinet.training.run import lightning_trainer_config
from tests.helpers import compose_config

CONF = Path(CONFIG_DIR)
GROUPS = [
    "data", "model", "optim", "trainer", "logger", "callbacks", "paths", "experiment", "debug",
    "hparams_search",
]


def _options(group: str) -> list[str]:
    # Files starting with "_" are shared bases included by the options, not options themselves.
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


@pytest.mark.parametrize(
    "override", [f"{g}={o}" for g in GROUPS for o in _options(g)], ids=lambda s: s
)
def test_every_option_composes_and_resolves(override: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [override], run_dir=tmp_path / "run")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["paths"]["output_dir"] == str(tmp_path / "run")
    validate_train_config(cfg)


def test_every_group_has_options() -> None:
    for group in GROUPS:
        assert _options(group), f"conf/{group}/ has no option"


def test_top_level_configs_compose(tmp_path: Path) -> None:
    resolved = {name: OmegaConf.to_container(compose_config(name, run_dir=tmp_path / name),
                                             resolve=True)
                for name in ("train", "synth", "evaluate", "export")}
    assert resolved["train"]["monitor"] == {"metric": "val/auroc", "mode": "max"}
    callbacks = resolved["train"]["callbacks"]
    assert callbacks["model_checkpoint"]["monitor"] == callbacks["early_stopping"]["monitor"] \
        == "val/auroc"
    assert resolved["evaluate"]["split"] == "test" and resolved["evaluate"]["ckpt_path"] is None
    # Evaluation takes the patch size, spacing and window from the model, not from the data.
    assert resolved["evaluate"]["data"]["patch_size"] is None
    assert resolved["export"]["parity"]["tolerance"] == 1e-5
    for name, cfg in resolved.items():
        assert cfg["paths"]["output_dir"] == str(tmp_path / name), name


def test_default_recipe_is_the_compact_cnn_on_the_phantom(tmp_path: Path) -> None:
    cfg = compose_config("train", run_dir=tmp_path)
    assert cfg.model.network.name == "compact"
    assert cfg.data.source._target_.endswith("SyntheticSource")
    assert list(cfg.data.patch_size) == [48, 48, 48]
    assert cfg.trainer.accelerator == "cpu"
    assert cfg.callbacks.model_checkpoint.monitor == "val/auroc"
    assert cfg.callbacks.model_checkpoint.dirpath == str(tmp_path / "checkpoints")


def test_experiment_equals_default(tmp_path: Path) -> None:
    default = OmegaConf.to_container(compose_config("train", run_dir=tmp_path), resolve=True)
    recipe = OmegaConf.to_container(
        compose_config("train", ["experiment=synthetic_cpu"], run_dir=tmp_path), resolve=True
    )
    assert default == recipe


def test_smoke_debug_keeps_checkpoints_and_logging(tmp_path: Path) -> None:
    cfg = compose_config("train", ["debug=smoke"], run_dir=tmp_path)
    assert cfg.trainer.max_epochs == 2
    assert cfg.data.source.num_train <= 64
    assert cfg.callbacks.model_checkpoint is not None
    assert "mlflow" in cfg.logger
    assert not cfg.trainer.get("fast_dev_run")


@pytest.mark.parametrize("debug", _options("debug"))
def test_debug_runs_have_their_own_experiment(debug: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"debug={debug}"], run_dir=tmp_path)
    assert cfg.logger.mlflow.experiment_name == "calcinet-debug"
    assert compose_config("train", run_dir=tmp_path).logger.mlflow.experiment_name == "calcinet"
    # logger=none on the command line wins over the debug config's MLflow experiment.
    quiet = compose_config("train", [f"debug={debug}", "logger=none"], run_dir=tmp_path)
    assert not quiet.logger


def test_overfit_and_profile_debug_configs_reach_the_trainer(tmp_path: Path) -> None:
    overfit = compose_config("train", ["debug=overfit"], run_dir=tmp_path)
    assert overfit.data.augment is None and overfit.callbacks.early_stopping is None
    trainer = instantiate(lightning_trainer_config(overfit), logger=False,
                          enable_checkpointing=False)
    assert trainer.overfit_batches == 2
    profile = compose_config("train", ["debug=profile"], run_dir=tmp_path)
    trainer = instantiate(lightning_trainer_config(profile), logger=False,
                          enable_checkpointing=False)
    assert type(trainer.profiler).__name__ == "SimpleProfiler"
    assert Path(trainer.profiler.dirpath) == tmp_path


def test_trainer_and_callbacks_instantiate(tmp_path: Path) -> None:
    cfg = compose_config("train", ["debug=smoke"], run_dir=tmp_path)
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    trainer = instantiate(lightning_trainer_config(cfg), callbacks=callbacks, logger=False)
    assert trainer.max_epochs == 2
    names = {type(c).__name__ for c in trainer.callbacks}
    assert {"ModelCheckpoint", "TQDMProgressBar"} <= names
