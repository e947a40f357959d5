"""Test helpers: composing the real Hydra configs and running the real entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from calcinet.cli import CONFIG_DIR

REPO = Path(__file__).resolve().parents[1]


def compose_config(
    name: str, overrides: Sequence[str] = (), run_dir: Path | None = None
) -> DictConfig:
    """Compose ``conf/<name>.yaml`` as the entry point would, with ``${hydra:...}`` resolvable."""
    GlobalHydra.instance().clear()
    run_dir = run_dir or Path.cwd()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name=name,
            overrides=[*overrides, f"hydra.run.dir={run_dir}"],
            return_hydra_config=True,
        )
    # compose() leaves the runtime fields empty: fill them as a real run would.
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.runtime.cwd = str(run_dir.parent)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # a task function never sees the hydra node
    return cfg


def run_cli(
    args: Sequence[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m calcinet <args>``-style entry points through their console scripts."""
    bin_dir = Path(sys.executable).parent
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("HYDRA_FULL_ERROR", "0")
    return subprocess.run(
        [str(bin_dir / args[0]), *args[1:]], cwd=cwd, env=full_env, capture_output=True,
        text=True, timeout=timeout,
    )
