"""The search space of a sweep, written in Hydra's sweep grammar, as Optuna distributions.

``hydra.sweeper.params`` and the sweep overrides on the command line use Hydra's grammar
(``choice(8, 16, 32)``, ``range(1, 5)``, ``interval(0.1, 0.5)``,
``tag(log, interval(1e-4, 1e-2))``, ``tag(int, interval(1, 64))`` for whole numbers); each
becomes an Optuna distribution, and every other override is passed unchanged to every trial.
Hydra parses the grammar (its ``OverridesParser``); this module only maps the parsed sweeps onto
Optuna's current distributions, which no released Hydra sweeper does for Optuna >= 4.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from calcinet.config import ConfigError

#: What ``hydra.sweeper.params`` values may be, for the error messages.
GRAMMAR = ("choice(a, b, ...), range(start, stop[, step]), interval(low, high), "
           "tag(log, interval(low, high)) or tag(int, interval(low, high))")


def parse(overrides: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Split ``key=value`` overrides into the searched distributions (by key) and the fixed
    overrides (their text, passed to every trial). A later override of a key replaces an
    earlier one; a fixed override of a searched key takes it out of the search.

    Raises:
        ConfigError: an override Hydra cannot parse, or a sweep Optuna cannot search (a float
            ``range`` whose step does not divide it, a log interval that includes 0).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    searched: dict[str, Any] = {}
    fixed: dict[str, str] = {}
    parser = OverridesParser.create()
    for text in overrides:
        try:
            (override,) = parser.parse_overrides([text])
        except OverrideParseException as error:
            raise ConfigError(f"sweep override {text!r}: {error}; expected key=value or "
                              f"key=<sweep> with {GRAMMAR}") from None
        key = override.get_key_element()
        if override.is_sweep_override():
            searched[key] = _distribution(text, override)
            fixed.pop(key, None)
        else:
            fixed[key] = text
            searched.pop(key, None)
    return searched, list(fixed.values())


def params_overrides(params: Mapping[str, Any] | DictConfig | None) -> list[str]:
    """``hydra.sweeper.params`` (``{key: sweep text}``) as override strings."""
    if params is None:
        return []
    if OmegaConf.is_config(params):
        params = OmegaConf.to_container(params, resolve=True)
    return [f"{key}={value}" for key, value in params.items()]


def check_keys(searched: Mapping[str, Any], config: DictConfig) -> None:
    """Every searched key names a value (or config group) of the composed task config.

    Raises:
        ConfigError: naming the first key that is not there.
    """
    missing = object()
    for key in searched:
        name = key.lstrip("+~")
        if key.startswith("+") or "@" in name:
            continue  # adds a key, or selects a group option into a package
        if OmegaConf.select(config, name, default=missing, throw_on_missing=False) is missing:
            raise ConfigError(
                f"hydra.sweeper.params: the searched key {name!r} is not in the training config; "
                "expected the dotted name of an existing value (e.g. optim.optimizer.lr) or "
                "config group (e.g. model), or +key to add one")


def trial_overrides(params: Mapping[str, Any]) -> list[str]:
    """One trial's sampled values as Hydra overrides (``key=value``)."""
    return [f"{key}={_override_value(value)}" for key, value in params.items()]


def _override_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _distribution(text: str, override: Any) -> Any:
    """The Optuna distribution of one parsed sweep override."""
    from hydra.core.override_parser.types import Transformer
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    value = override.value()
    try:
        if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
            return CategoricalDistribution(
                list(override.sweep_iterator(transformer=Transformer.encode)))
        if override.is_range_sweep():  # Hydra's range excludes stop, as Python's does
            values = list(override.sweep_iterator())
            if not values:
                raise ValueError("the range is empty")
            if all(isinstance(v, int) for v in values) and isinstance(value.step, int):
                return IntDistribution(values[0], values[-1], step=int(value.step))
            return FloatDistribution(float(values[0]), float(values[-1]), step=float(value.step))
        if override.is_interval_sweep():  # Hydra reads its bounds as floats: tag int
            log = "log" in value.tags
            if "int" in value.tags:
                low, high = int(value.start), int(value.end)
                if (low, high) != (value.start, value.end):
                    raise ValueError("an int interval needs whole-number bounds")
                return IntDistribution(low, high, log=log)
            return FloatDistribution(float(value.start), float(value.end), log=log)
    except ValueError as error:
        raise ConfigError(f"sweep {text!r}: {error}") from None
    raise ConfigError(f"sweep {text!r}: expected {GRAMMAR}")
