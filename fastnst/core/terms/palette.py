"""The painting's colours: a sliced Wasserstein distance between RGB pixel sets (Heitz et al. 2021 use it on
VGG features; here on pixels). A Gram matrix sees a colour distribution's first two moments; this sees all of
it, so the painting's yellows land on some pixels instead of its average blue landing on all of them."""

from __future__ import annotations

import torch

from fastnst.core.kernels import sample_rows
from fastnst.core.terms.base import Key, LossInputs, Term, fp32, style_targets

PALETTE_PIXELS = 16384  # the painting's colours kept, and the output's judged per training step
PALETTE_DIRECTIONS = 64  # fixed projections: RGB is 3-D, 64 directions cover its sphere densely
PALETTE_SAMPLED_DIRECTIONS = 16  # of them, drawn per training step


def sorted_projections(points: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """(N, P, D) points -> (N, P, K) their projections on ``directions`` (D, K), sorted along P."""
    with torch.autocast(device_type=points.device.type, enabled=False):
        return (fp32(points) @ directions.to(fp32(points).dtype)).sort(dim=1).values


def sliced_distance(points: torch.Tensor, theirs: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Mean squared difference, quantile by quantile, between the sorted projections of ``points`` (N, P, D)
    and ``theirs`` (N, Q, K) (the targets' sorted projections on the same ``directions``), any P and Q."""
    with torch.autocast(device_type=points.device.type, enabled=False):
        mine = sorted_projections(points, directions)
        p, q = mine.shape[1], theirs.shape[1]
        index = ((torch.arange(p, device=points.device) + 0.5) * (q / p)).long().clamp_max(q - 1)
        return (mine - theirs[:, index]).pow(2).mean()


def sliced_palette(pixels: torch.Tensor, targets: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Sliced Wasserstein-2 distance between each image's colours (N, P, 3) and its target colours (N, Q, 3)
    along ``directions`` (3, K)."""
    return sliced_distance(pixels, sorted_projections(targets, directions), directions)


def unit_directions(dim: int, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(dim, count) random directions on the unit sphere."""
    d = torch.randn(dim, count, generator=generator)
    return d / d.norm(dim=0, keepdim=True)


class Palette(Term):
    """``palette_weight · SW₂²(pixels of ŷ, pixels of s)`` over 64 fixed directions (fixed, so the objective is
    deterministic: L-BFGS in the Gatys loop needs that). A training step judges 16,384 random pixels on 16
    random directions of the 64: an unbiased estimate of the same mean."""

    name = "palette"
    order = 40
    # palette_pool: judge the colours of pool x pool averages of the output, not of single pixels. Pixel by pixel,
    # the cheapest way for a network to spread its colours like the painting's is a fine pattern of light and
    # dark (a dither, seen as hatching); averaged, the colours must come in patches.
    keys = {"palette_weight": Key(0.0), "palette_pool": Key(1.0)}

    def set_style(self, styles: list[torch.Tensor], features: list[dict[str, torch.Tensor]]) -> None:
        g = torch.Generator().manual_seed(0)  # the same pixels of each painting (any sizes), every run
        pixels = []
        for s in styles:
            flat = s[0].reshape(3, -1).T
            pixels.append(flat[torch.randint(len(flat), (PALETTE_PIXELS,), generator=g).to(flat.device)])
        style_pixels = torch.stack(pixels).float()
        directions = unit_directions(3, PALETTE_DIRECTIONS, g).to(style_pixels)
        self.register_buffer("directions", directions, persistent=False)
        # The paintings' side never changes: projected and sorted once per run, not per step.
        self.register_buffer("targets", sorted_projections(style_pixels, directions), persistent=False)

    @property
    def has_style(self) -> bool:
        return hasattr(self, "targets")

    def forward(self, inputs: LossInputs) -> dict[str, torch.Tensor]:
        output = inputs.output
        pool = int(self.options["palette_pool"])
        if pool > 1 and min(output.shape[-2:]) >= 2 * pool:
            output = torch.nn.functional.avg_pool2d(fp32(output), pool)
        targets = style_targets(inputs.style_index, self.targets, len(output))
        pixels, directions = output.flatten(2).transpose(1, 2), self.directions
        if inputs.sample:
            pixels = sample_rows(pixels, PALETTE_PIXELS)
            chosen = torch.randperm(directions.shape[1], device=directions.device)[:PALETTE_SAMPLED_DIRECTIONS]
            directions, targets = directions[:, chosen], targets[..., chosen]
        return {self.name: self.weight * sliced_distance(pixels, targets, directions)}
