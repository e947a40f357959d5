"""CPU precision and memory format: bf16 where the CPU computes bfloat16 natively, float32
elsewhere, ``channels_last_3d`` on every CPU; a bf16 run trains, and its export is float32 and
passes parity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import compose_config, run_cli
from tests.scaling.conftest import TINY


def _cpu_flags() -> set[str]:
    """The CPU's feature flags as the kernel reports them (independent of torch)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    pytest.skip("no /proc/cpuinfo flags on this system")


def test_auto_precision_follows_the_cpus_native_bf16(tmp_path: Path) -> None:
    native = bool(_cpu_flags() & {"avx512_bf16", "amx_bf16", "amx_tile"})
    cfg = compose_config("train", [], run_dir=tmp_path)
    assert cfg.trainer.precision == ("bf16-mixed" if native else "32-true")
    assert cfg.model.channels_last is True
    gpu = compose_config("train", ["trainer=gpu"], run_dir=tmp_path)
    assert gpu.trainer.precision == "bf16-mixed" and gpu.model.channels_last is False
    sliced = compose_config("train", ["model=resnet18_2p5d"], run_dir=tmp_path)
    assert sliced.model.channels_last is False  # 2D convolutions
    chosen = compose_config("train", ["trainer.precision=32-true", "model.channels_last=true"],
                            run_dir=tmp_path)
    assert chosen.trainer.precision == "32-true" and chosen.model.channels_last is True


@pytest.mark.slow
def test_a_bf16_channels_last_run_trains_and_exports_float32(tmp_path: Path) -> None:
    run = tmp_path / "run"
    trained = run_cli(["calcinet-train", *TINY, "trainer.max_epochs=1", "logger=none",
                       "trainer.precision=bf16-mixed", "model.channels_last=true",
                       f"hydra.run.dir={run}"], cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    checkpoint = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu",
                            weights_only=False)
    weights = [v for k, v in checkpoint["state_dict"].items() if k.startswith("network.")]
    assert weights and all(w.dtype == torch.float32 for w in weights if w.is_floating_point())
    assert checkpoint["hyper_parameters"]["channels_last"] is True
    exported = run_cli(["calcinet-export", f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
                        f"output_path={tmp_path / 'model.ts'}", "mlflow.enabled=false"],
                       cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-3000:]
    model = torch.jit.load(str(tmp_path / "model.ts"))
    probability = model(torch.full((2, 1, 16, 16, 16), -50.0))
    assert probability.dtype == torch.float32 and probability.shape == (2,)


@pytest.mark.slow
def test_trainer_compile_compiles_the_network_in_place(tmp_path: Path) -> None:
    """trainer.compile=true: the network runs through Inductor, gives the eager network's
    output, and its state dict keeps the plain keys that checkpoints and export read."""
    from calcinet.training.run import build

    cfg = compose_config("train", [*TINY, "logger=none", "trainer.compile=true"],
                         run_dir=tmp_path)
    parts = build(cfg)
    network = parts.module.network.eval()
    assert network._compiled_call_impl is not None
    assert not any("_orig_mod" in key for key in network.state_dict())
    patches = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        compiled = network(patches)
        eager = network.forward(patches)  # forward() itself bypasses the compiled call
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    refused = compose_config("train", [*TINY, "trainer.compile=yes"], run_dir=tmp_path)
    from calcinet.config import ConfigError, validate_train_config

    with pytest.raises(ConfigError, match="trainer.compile='yes': expected true or false"):
        validate_train_config(refused)
