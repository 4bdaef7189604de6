"""Style as the distribution of VGG features: a sliced Wasserstein distance (Heitz, Vanhoey, Chambon &
Belcour 2021, "A Sliced Wasserstein Loss for Neural Texture Synthesis").

A Gram matrix keeps a layer's second moments, which a network can meet with a wash of the painting's average
texture; the sorted projections of the features keep the whole distribution: which strokes, and how many."""

from __future__ import annotations

import torch

from fastnst.core.kernels import sample_rows
from fastnst.core.terms.base import Key, LossInputs, Term, fp32
from fastnst.core.terms.palette import sliced_distance, sorted_projections, unit_directions

SW_POINTS = 16384  # feature vectors kept of each painting per layer, and judged of each output per training step
SW_DIRECTIONS = 32  # random directions per layer, drawn afresh each training step (Heitz et al.: as many as C)


class SlicedStyle(Term):
    """``sw_weight · Σ_l w_l · SW₂²(φ_l(ŷ), φ_l(s)) / n_l``, n_l the mean square of the painting's features at
    layer l (a relative error, as ``style_norm=target``). Directions are drawn afresh each training step (an
    unbiased estimate over the sphere) and fixed, seeded, otherwise (L-BFGS needs a fixed objective)."""

    name = "sliced_style"
    order = 25
    keys = {"sw_weight": Key(0.0),
            "sw_layers": Key({"relu1_1": 1.0, "relu2_1": 1.0, "relu3_1": 1.0, "relu4_1": 1.0}, "layers")}

    def output_layers(self) -> list[str]:
        return list(self.options["sw_layers"])

    def style_layers(self) -> list[str]:
        return list(self.options["sw_layers"])

    def set_style(self, styles: list[torch.Tensor], features: list[dict[str, torch.Tensor]]) -> None:
        g = torch.Generator().manual_seed(0)
        for name in self.options["sw_layers"]:
            points = torch.stack([_points(f[name], SW_POINTS, g) for f in features])  # (S, Q, C)
            self.register_buffer(f"points_{name}", points, persistent=False)
            self.register_buffer(f"norm_{name}", points.pow(2).mean(dim=(1, 2)).clamp_min(1e-30), persistent=False)
            fixed = unit_directions(points.shape[-1], SW_DIRECTIONS, g).to(points)
            self.register_buffer(f"directions_{name}", fixed, persistent=False)

    @property
    def has_style(self) -> bool:
        return all(hasattr(self, f"points_{name}") for name in self.options["sw_layers"])

    def forward(self, inputs: LossInputs) -> dict[str, torch.Tensor]:
        total = fp32(inputs.output.new_zeros(()))
        n = len(inputs.output)
        for name, w in self.options["sw_layers"].items():
            mine = fp32(inputs.features[name]).flatten(2).transpose(1, 2)  # (N, P, C)
            directions = getattr(self, f"directions_{name}")
            if inputs.sample:
                mine = sample_rows(mine, SW_POINTS)
                directions = unit_directions(mine.shape[-1], SW_DIRECTIONS).to(mine)
            points, norm = getattr(self, f"points_{name}"), getattr(self, f"norm_{name}")
            if inputs.style_index is None:  # one painting: its projections sorted once, broadcast over the batch
                theirs = sorted_projections(points[:1], directions).expand(n, -1, -1)
                err = sliced_distance(mine, theirs, directions) / norm[0]
            else:
                theirs = sorted_projections(points[inputs.style_index], directions)
                err = torch.stack([sliced_distance(mine[i:i + 1], theirs[i:i + 1], directions)
                                   for i in range(n)]).div(norm[inputs.style_index]).mean()
            total = total + w * err
        return {self.name: self.weight * total}


def _points(features: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """(1, C, H, W) -> (count, C): feature vectors drawn at random positions (seeded)."""
    flat = fp32(features[0]).flatten(1).T
    return flat[torch.randint(len(flat), (count,), generator=generator).to(flat.device)]
