"""Classes built on first use, for modules that every command imports.

A class that subclasses something slow to import (Lightning's MLflow logger, Optuna's storages
and callbacks) is defined inside a factory and made a module attribute the first time it is
asked for. It gets the module's name and its own, so that pickling (``ddp_spawn``, submitit jobs)
finds it as ``<module>.<name>``. Standard library only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_classes(module: str, factories: Mapping[str, Callable[[], type]]
                 ) -> Callable[[str], Any]:
    """The module-level ``__getattr__`` of ``module`` that builds ``factories[name]()`` once.

    Raises (from the returned function):
        AttributeError: a name that is neither a module attribute nor a factory.
    """

    def __getattr__(name: str) -> Any:
        if name not in factories:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        cls = factories[name]()
        cls.__module__, cls.__qualname__ = module, name
        setattr(sys.modules[module], name, cls)
        return cls

    return __getattr__
