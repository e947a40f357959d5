"""Checks on a composed training config, run before anything is built.

Hydra already refuses unknown keys and unknown group options; these checks catch values that
compose fine but cannot work (negative epochs, a patch too small for the network, ...). Each
problem is one line naming the key, the value and what is expected.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key, the value and the fix."""


def _cpu_precision(accelerator: str = "cpu") -> str:
    """``${calcinet.cpu_precision:${trainer.accelerator}}``: ``bf16-mixed`` on a CPU that computes
    bfloat16 natively, else ``32-true`` (see :func:`calcinet.runtime.native_bf16_cpu`)."""
    from calcinet.runtime import native_bf16_cpu

    return "bf16-mixed" if accelerator == "cpu" and native_bf16_cpu() else "32-true"


def _cpu_channels_last(accelerator: str = "cpu") -> bool:
    """``${calcinet.cpu_channels_last:${trainer.accelerator}}``: ``channels_last_3d`` on the CPU,
    in float32 as in bf16 (pure compute of the default 3D CNN, ``scripts/bench_loops.py``: 1.31x
    faster than the contiguous layout in float32 on a 2-core AMD EPYC), the default layout
    elsewhere (GPU layouts are left to cuDNN's choice)."""
    return accelerator == "cpu"


def _working_directory() -> str:
    """``${calcinet.cwd:}``: the folder the command runs in. Hydra's ``${hydra:runtime.cwd}`` is
    set inside a job only, so a multirun's sweep folder (resolved by the launcher, before any
    job) could not use it."""
    return os.getcwd()


def _config_groups() -> str:
    """``${calcinet.config_groups:}`` in ``hydra.help.template``: ``group: option, ...`` for the
    groups the command's config composes (its defaults list, from ``hydra.runtime.choices``), not
    every group of ``conf/`` as Hydra's ``$APP_CONFIG_GROUPS``; options starting with ``_``
    (``_base``, inherited by the others) are left out."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.object_type import ObjectType

    loader = GlobalHydra.instance().config_loader()
    groups = sorted({group.split("@")[0] for group in HydraConfig.get().runtime.choices
                     if group != "hydra" and not group.startswith("hydra/")})
    lines = []
    for group in groups:
        options = [o for o in loader.get_group_options(group, ObjectType.CONFIG)
                   if not o.startswith("_")]
        lines.append(f"{group}: {', '.join(sorted(options))}")
    return "\n".join(lines)


def _exit_statuses() -> str:
    """``${calcinet.exit_statuses:}``: the exit-status table every command's help ends with."""
    from calcinet.cli import EXIT_STATUSES

    return EXIT_STATUSES


# Resolved when a config is composed (torch is imported then, not when a command starts).
for _name, _resolver in (("calcinet.cpu_precision", _cpu_precision),
                         ("calcinet.cpu_channels_last", _cpu_channels_last),
                         ("calcinet.cwd", _working_directory),
                         ("calcinet.config_groups", _config_groups),
                         ("calcinet.exit_statuses", _exit_statuses)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)


def _get(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, throw_on_missing=False)


def _require(cfg: DictConfig, key: str, ok: Callable[[Any], bool], expected: str) -> Any:
    value = _get(cfg, key)
    try:
        good = ok(value)
    except (TypeError, ValueError):
        good = False
    if not good:
        shown = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        raise ConfigError(f"{key}={shown!r}: expected {expected}")
    return value


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def validate_train_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first value in ``cfg`` that cannot work."""
    # Imported here, not at the top: every command imports this module for ConfigError before it
    # parses its arguments, and these two pull in torch, Lightning and MONAI (seconds).
    from calcinet.models.networks import check_patch_size, network_entry
    from calcinet.training.module import LOSSES

    _require(cfg, "seed", lambda v: v is None or _is_int(v), "an integer or null")
    _require(cfg, "trainer.max_epochs", lambda v: _is_int(v) and v > 0, "a positive integer")
    _require(cfg, "trainer.compile", lambda v: v is None or isinstance(v, bool), "true or false")
    _require(cfg, "data.batch_size", lambda v: _is_int(v) and v > 0, "a positive integer")
    _require(cfg, "data.num_workers", lambda v: _is_int(v) and v >= 0, "an integer >= 0")
    patch = _require(
        cfg, "data.patch_size",
        lambda v: len(v) == 3 and all(_is_int(s) and s > 0 for s in v),
        "three positive integers (x, y, z) in voxels",
    )
    _require(
        cfg, "data.spacing",
        lambda v: len(v) == 3 and all(_is_number(s) and s > 0 for s in v),
        "three positive numbers (x, y, z) in mm",
    )
    _require(
        cfg, "data.hu_window",
        lambda v: len(v) == 2 and all(_is_number(s) for s in v) and v[0] < v[1],
        "[low, high] in HU with low < high",
    )
    _require(cfg, "optim.optimizer.lr", lambda v: _is_number(v) and v > 0, "a positive number")
    pos_weight = _get(cfg, "model.loss.pos_weight")
    if pos_weight is not None and pos_weight != "auto" and not (
        _is_number(pos_weight) and pos_weight > 0
    ):
        raise ConfigError(
            f"model.loss.pos_weight={pos_weight!r}: expected null, 'auto' or a positive number"
        )
    _require(cfg, "model.loss.name", lambda v: v in LOSSES, f"one of {', '.join(LOSSES)}")
    _require(cfg, "model.loss.label_smoothing", lambda v: _is_number(v) and 0 <= v < 1,
             "a number in [0, 1)")
    network = OmegaConf.to_container(_get(cfg, "model.network"), resolve=True)
    if not isinstance(network, dict) or "name" not in network:
        raise ConfigError(f"model.network={network!r}: expected a mapping with a 'name'")
    name = network.pop("name")
    try:
        network_entry(name)
        check_patch_size(name, list(patch), **network)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def compose(name: str, overrides: Sequence[str] = (), run_dir: str | Path | None = None
            ) -> DictConfig:
    """Compose ``conf/<name>.yaml`` from Python as its entry point would, for scripts and tests.

    The ``${hydra:...}`` interpolations (run folder, working directory) resolve as in a real run
    whose folder is ``run_dir`` (default: the current directory); the returned config has no
    ``hydra`` node, like the one a Hydra main receives.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from calcinet.cli import CONFIG_DIR

    run_dir = Path(run_dir) if run_dir is not None else Path.cwd()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = hydra_compose(config_name=name, overrides=[*overrides, f"hydra.run.dir={run_dir}"],
                            return_hydra_config=True)
    with open_dict(cfg):  # compose() leaves the runtime fields empty
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.runtime.cwd = str(run_dir.parent)
        # As the command started in the run folder's parent: mlflow.db, outputs/ and the cache
        # go there, not into the calling process's working folder.
        if "paths" in cfg and OmegaConf.to_container(cfg.paths).get("root_dir") == \
                "${calcinet.cwd:}":
            cfg.paths.root_dir = str(run_dir.parent)
    # HydraConfig keeps a copy that still has its hydra node, as in a real run, so that
    # interpolations inside it (hydra.sweep.dir -> ${hydra.sweeper.study_name}) resolve.
    HydraConfig.instance().set_config(copy.deepcopy(cfg))
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
