from __future__ import annotations

import pytest
import torch

from calcinet.training.schedules import warmup_cosine


def _lrs(total: int, **kw: float) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, total_steps=total, **kw)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_warms_up_linearly_then_decays_to_the_floor() -> None:
    lrs = _lrs(100, warmup_fraction=0.1, min_lr_ratio=0.01)
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lrs[-1] == pytest.approx(0.01, abs=2e-3)
    assert lrs[55] == pytest.approx(0.01 + 0.99 * 0.5, abs=0.02)  # half-way through the cosine


def test_no_warmup() -> None:
    assert _lrs(10, warmup_fraction=0.0)[0] == pytest.approx(1.0)


def test_rejects_an_empty_run() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="total_steps=0"):
        warmup_cosine(opt, total_steps=0)
