"""Progress bars of the long steps (caching, scoring, bootstrap, synth, predict, parity).

tqdm with ``disable=None`` shows a bar on a terminal only, so logs and pipes stay clean; quiet mode
(``quiet=true`` / ``--quiet``) turns every bar off. This module imports tqdm and nothing else, so
that inference (``calcinet-predict``) stays light; the switch lives here, once, rather than as a
``disable=`` argument threaded through every function that shows a bar.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Turn every later progress bar off (True) or back to terminal-only (False)."""
    global _quiet
    _quiet = bool(quiet)


def quiet() -> bool:
    """Whether quiet mode is on."""
    return _quiet


def shown() -> bool:
    """Whether a progress bar would show now: a terminal on stderr and quiet mode off (what
    Lightning's and MLflow's own bars are told too)."""
    return not _quiet and sys.stderr.isatty()


def bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)`` shown on a terminal only, never in quiet mode; bars
    disappear when done (``leave=False``) unless asked otherwise."""
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, disable=True if _quiet else None, **kwargs)
