"""Bad configs stop before training with one line naming the key, the value and the expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from calcinet.config import ConfigError, validate_train_config
from tests.helpers import compose_config, run_cli


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epochs=-3", "trainer.max_epochs=-3: expected a positive integer"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0: expected a positive integer"),
        ("data.batch_size=0", "data.batch_size=0: expected a positive integer"),
        ("data.patch_size=[8,8,8]", "data.patch_size=[8, 8, 8]: too small for network 'compact'; "
                                    "expected every side >= 32 voxels"),
        ("data.patch_size=[48,48]", "data.patch_size=[48, 48]: expected three positive integers"),
        ("data.spacing=[1,1,-1]", "data.spacing=[1, 1, -1]: expected three positive numbers"),
        ("data.hu_window=[500,100]", "data.hu_window=[500, 100]: expected [low, high] in HU"),
        ("optim.optimizer.lr=-0.1", "optim.optimizer.lr=-0.1: expected a positive number"),
        ("model.loss.pos_weight=heavy", "model.loss.pos_weight='heavy': expected null, 'auto'"),
        ("model.network.name=vgg", "model.network.name='vgg': unknown network; expected one of"),
        ("seed=abc", "seed='abc': expected an integer or null"),
    ],
)
def test_invalid_values_are_named(override: str, message: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [override], run_dir=tmp_path)
    with pytest.raises(ConfigError) as caught:
        validate_train_config(cfg)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_entry_point_reports_one_line_and_trains_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_cli(
        ["calcinet-train", "trainer.max_epochs=-1", f"hydra.run.dir={run_dir}"], cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "calcinet: error: trainer.max_epochs=-1: expected a positive integer"
    )
    assert not (run_dir / "checkpoints").exists()
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("trainer.max_epoch=3", "Key 'max_epoch' is not in struct"),
        ("model=vgg", "Could not find 'model/vgg'"),
    ],
)
def test_unknown_keys_and_options_are_refused_by_hydra(
    override: str, fragment: str, tmp_path: Path
) -> None:
    result = run_cli(["calcinet-train", override, f"hydra.run.dir={tmp_path / 'run'}"],
                     cwd=tmp_path)
    assert result.returncode == 2  # Hydra's own errors share calcinet's input-error status
    assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "key", "extra"),
    [("calcinet-train", "data.source.phantom", "logger=none"),
     ("calcinet-synth", "phantom", "num_samples=2")],
)
def test_a_bad_phantom_option_is_one_line_from_the_entry_points(
    command: str, key: str, extra: str, tmp_path: Path
) -> None:
    """Phantom values are checked where the data is built (PhantomConfig): still one line, 2."""
    result = run_cli([command, f"{key}.renderers=[pixel]", extra,
                      f"hydra.run.dir={tmp_path / 'run'}", f"paths.data_dir={tmp_path}"],
                     cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"calcinet: error: {key}: PhantomConfig.renderers=['pixel']")
    assert "'pixel' is unknown" in line
