"""Console entry points. Each is thin: compose the config, hand it to the package, report.

Hydra mains share :data:`CONFIG_DIR` and import :mod:`calcinet.config` before Hydra composes
(it registers the ``${calcinet.*}`` resolvers the configs use); errors in user input end with
one line on stderr and exit status 2 (:func:`fail`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn


def _config_dir() -> str:
    """``conf/`` shipped inside the package (wheel), else the source tree's top-level ``conf/``."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    return str(package / "conf")  # Hydra names it if it is missing


CONFIG_DIR = _config_dir()


def fail(error: Exception | str) -> NoReturn:
    """Print ``calcinet: error: <message>`` on stderr and exit with status 2."""
    print(f"calcinet: error: {error}", file=sys.stderr)
    sys.exit(2)


def user_error(error: BaseException, expected: tuple[type[BaseException], ...]
               ) -> BaseException | None:
    """The user-facing error behind ``error``: itself, or the cause Hydra wrapped in its
    "Error in call to target" when building a config node; None when it is neither."""
    seen = error
    while seen is not None:
        if isinstance(seen, expected):
            return seen
        seen = seen.__cause__
    return None
