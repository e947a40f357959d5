"""Finding the checkpoint a training run chose, from the run folder a user has at hand."""

from __future__ import annotations

from pathlib import Path

import torch


def find_checkpoint(path: str | Path) -> Path:
    """``path`` itself when it is a file; for a training run folder (or its ``checkpoints/``),
    the best checkpoint in it: the one with the highest stored ``val/auroc``, ``last.ckpt`` only
    when there is no other. Raises FileNotFoundError naming the path otherwise."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise FileNotFoundError(f"ckpt_path={str(path)!r}: no such file or folder")
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    candidates = sorted(p for p in folder.glob("*.ckpt") if p.name != "last.ckpt")
    if not candidates:
        if (folder / "last.ckpt").is_file():
            return folder / "last.ckpt"
        raise FileNotFoundError(f"ckpt_path={str(path)!r}: no *.ckpt file in {folder}")

    def score(candidate: Path) -> float:
        info = torch.load(candidate, map_location="cpu", weights_only=False).get("calcinet", {})
        value = (info.get("val_metrics") or {}).get("val/auroc")
        return float(value) if value is not None else float("-inf")

    return max(candidates, key=score) if len(candidates) > 1 else candidates[0]
