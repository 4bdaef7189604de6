"""Total variation (Mahendran & Vedaldi 2015, β = 2), as Johnson et al. use it against high-frequency noise."""

from __future__ import annotations

import torch

from fastnst.core.terms.base import Key, LossInputs, Term, fp32


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between vertically and horizontally adjacent pixels."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = fp32(x)
        return (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()


class TotalVariation(Term):
    name = "tv"
    order = 30
    always_reported = True
    keys = {"tv_weight": Key(0.0)}

    def forward(self, inputs: LossInputs) -> dict[str, torch.Tensor]:
        return {self.name: self.weight * total_variation(inputs.output)}
