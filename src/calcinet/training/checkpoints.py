"""The checkpoints of a run folder: which one is best, which one is last, what they scored.

A run folder's ``checkpoints/`` holds ``best.ckpt`` (the best so far on the monitored metric),
the named checkpoint it was copied from (``epoch011-val_auroc0.9444.ckpt``: no ``=``, so a path
can be pasted into any shell and any Hydra override) and ``last.ckpt`` (the last finished
epoch). The score of a checkpoint is read from the checkpoint itself
(``checkpoint["calcinet"]["val_metrics"]``), never from a file name or a callback's memory, so
a copied or moved run folder tells the same story.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

BEST = "best.ckpt"
LAST = "last.ckpt"
#: The monitored metric of checkpoints written before it was stored with them.
DEFAULT_MONITOR = {"metric": "val/auroc", "mode": "max"}


@dataclass(frozen=True)
class Saved:
    """What a checkpoint file says about itself."""

    path: Path
    epoch: int
    global_step: int
    metric: str
    mode: str
    score: float | None

    def better_than(self, other: Saved | None) -> bool:
        if self.score is None or not math.isfinite(self.score):
            return False
        if other is None or other.score is None or not math.isfinite(other.score):
            return True
        return self.score > other.score if self.mode == "max" else self.score < other.score


def read_saved(path: Path) -> Saved:
    """The epoch, step and monitored score stored in the checkpoint at ``path``."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    info = checkpoint.get("calcinet") or {}
    monitor = {**DEFAULT_MONITOR, **(info.get("monitor") or {})}
    score = (info.get("val_metrics") or {}).get(monitor["metric"])
    return Saved(Path(path), int(checkpoint.get("epoch", -1)),
                 int(checkpoint.get("global_step", -1)), monitor["metric"], monitor["mode"],
                 None if score is None else float(score))


def checkpoint_folder(path: Path) -> Path:
    """``<run>/checkpoints`` when ``path`` is a run folder, else ``path``."""
    return path / "checkpoints" if (path / "checkpoints").is_dir() else path


def newest_last(folder: Path) -> Path | None:
    """The ``last*.ckpt`` of ``folder`` with the most training steps (a copied folder may also
    hold Lightning's ``last-v1.ckpt``); None when there is none."""
    found = [read_saved(p) for p in folder.glob("last*.ckpt") if p.is_file()]
    if not found:
        return None
    return max(found, key=lambda s: (s.global_step, s.epoch, s.path.name == LAST)).path


def best_saved(folder: Path) -> Saved | None:
    """The best scoring named checkpoint of ``folder`` (not ``best.ckpt``, its copy, nor
    ``last*``), read from the files."""
    best = None
    for path in sorted(folder.glob("*.ckpt")):
        if path.name.startswith("last") or path.name == BEST:
            continue
        saved = read_saved(path)
        if saved.better_than(best):
            best = saved
    return best


def find_checkpoint(path: str | Path) -> Path:
    """``path`` itself when it is a file; for a training run folder (or its ``checkpoints/``)
    ``best.ckpt``, else the best scoring checkpoint in it, else the newest ``last*.ckpt``.

    Raises:
        FileNotFoundError: naming the path and what was expected.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise FileNotFoundError(f"ckpt_path={str(path)!r}: no such file or folder")
    folder = checkpoint_folder(path)
    if (folder / BEST).is_file():
        return folder / BEST
    best = best_saved(folder)
    if best is not None:
        return best.path
    last = newest_last(folder)
    if last is None:
        raise FileNotFoundError(f"ckpt_path={str(path)!r}: no *.ckpt file in {folder}")
    return last
