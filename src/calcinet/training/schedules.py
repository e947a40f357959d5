"""Learning-rate schedules, stepped once per optimiser step."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(
    optimizer: Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.05,
    min_lr_ratio: float = 0.01,
) -> LambdaLR:
    """Linear warm-up from ~0 to the base LR, then cosine decay to ``min_lr_ratio`` x base LR.

    Args:
        optimizer: the optimiser whose parameter groups carry the base learning rates.
        total_steps: optimiser steps in the whole run (Lightning's ``estimated_stepping_batches``).
        warmup_fraction: share of ``total_steps`` spent warming up.
        min_lr_ratio: final learning rate as a fraction of the base rate.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps={total_steps}: expected at least one optimiser step")
    warmup_steps = max(1, round(warmup_fraction * total_steps)) if warmup_fraction > 0 else 0

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
