"""Learning-rate schedules for training runs (``scheduler=cosine``); none by default (Johnson et al.:
Adam at a constant 1e-3)."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from fastnst.core.errors import FastNSTError


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int = 0, total_steps: int = 1,
                  min_ratio: float = 0.0) -> LambdaLR:
    """The lr times ``(step + 1) / warmup_steps`` for the first ``warmup_steps`` steps, then a cosine from 1 down
    to ``min_ratio`` at ``total_steps``, and ``min_ratio`` after it (a run resumed past its planned end)."""
    if not (isinstance(warmup_steps, int) and isinstance(total_steps, int) and 0 <= warmup_steps < total_steps):
        raise FastNSTError(f"the schedule needs 0 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}",
                           param="schedule")
    if not 0 <= min_ratio <= 1:
        raise FastNSTError(f"min_ratio must be in [0, 1], got {min_ratio}", param="schedule")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
