"""Feature reconstruction (Johnson et al. 2016, eq. 2): the output's VGG features against the photo's."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fastnst.core.terms.base import Key, LossInputs, Term, fp32


class Content(Term):
    """``content_weight · Σ_j w_j ‖φ_j(ŷ) − φ_j(y)‖² / (C_j H_j W_j)``. With ``content_norm=target`` each
    layer's error is divided by the photo's mean squared features there (a relative error, ~44 on a photo's
    relu2_2 on the ImageNet VGG16), so one weight means the same on any VGG and beside relative style terms."""

    name = "content"
    order = 10
    always_reported = True
    keys = {"content_weight": Key(1.0),
            "content_layers": Key({"relu2_2": 1.0}, "layers"),
            "content_norm": Key("none", "choice", ("none", "target"))}

    def output_layers(self) -> list[str]:
        return list(self.options["content_layers"])

    def content_layers(self) -> list[str]:
        return list(self.options["content_layers"])

    def forward(self, inputs: LossInputs) -> dict[str, torch.Tensor]:
        err = fp32(inputs.output.new_zeros(()))
        for name, w in self.options["content_layers"].items():
            target = fp32(inputs.targets[name])
            mse = F.mse_loss(fp32(inputs.features[name]), target)
            if self.options["content_norm"] == "target":
                mse = mse / target.pow(2).mean().clamp_min(1e-30)
            err = err + w * mse
        return {self.name: self.weight * err}
