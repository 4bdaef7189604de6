"""Stability on video without optical flow: the network should commute with small motions
(fastnst/core/temporal.py has the warps and the flicker metrics)."""

from __future__ import annotations

import torch

from fastnst.core.temporal import temporal_loss
from fastnst.core.terms.base import Key, LossInputs, Term


class Temporal(Term):
    """``temporal_weight · ‖f(W(x)) − W(f(x))‖²`` inside the image, W a small random affine warp."""

    name = "temporal"
    order = 90
    keys = {"temporal_weight": Key(0.0)}
    in_fits = False  # a fitted painting keeps the base network's stability
    under_autocast = True  # it runs the network again, in the run's precision

    def forward(self, inputs: LossInputs) -> dict[str, torch.Tensor]:
        if inputs.network is None or inputs.content is None:
            raise ValueError("the temporal term needs the network and the content batch")
        return {self.name: self.weight * temporal_loss(inputs.network, inputs.content, inputs.output)}
