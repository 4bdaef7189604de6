"""Temporal stability with known motion: random affine warps and the warping error.

Training (``loss.temporal_weight``): for each crop x and a small random affine warp W, penalise
‖f(W(x)) − W(f(x))‖² where W is defined (inside the image). A network that commutes with small
motions does not flicker on video, and needs no optical flow at inference. The same warp and
mask give the flicker metric of ``scripts/flicker.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


def random_affine(n: int, max_shift: float = 0.04, max_rotation: float = 2.0, max_zoom: float = 0.04,
                  generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """(n, 2, 3) affine matrices in ``affine_grid``'s normalised coordinates: a shift up to
    ``max_shift`` of the half-size, a rotation up to ``max_rotation`` degrees, a zoom up to ±``max_zoom``
    — roughly the motion between consecutive video frames."""
    u = torch.rand(n, 4, generator=generator) * 2 - 1
    angle = u[:, 0] * math.radians(max_rotation)
    scale = 1 + u[:, 1] * max_zoom
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, u[:, 2] * max_shift], 1),
                         torch.stack([sin, cos, u[:, 3] * max_shift], 1)], 1)
    return theta.to(device)


def warp(x: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp (N, C, H, W) by ``theta`` (bilinear). Returns the warped batch and a (N, 1, H, W) mask
    that is 1 where every sample came from inside the source image."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    ones = torch.ones_like(x[:, :1])
    mask = (F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=False) > 0.999)
    return warped, mask.to(x.dtype)


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (a − b)² over the pixels where ``mask`` is 1 (and all channels)."""
    a, b, mask = a.float(), b.float(), mask.float()
    return ((a - b) ** 2 * mask).sum() / (mask.sum() * a.shape[1]).clamp_min(1.0)


def temporal_loss(network: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                  y: torch.Tensor | None = None, theta: torch.Tensor | None = None) -> torch.Tensor:
    """‖f(W(x)) − W(f(x))‖² inside the valid mask. ``y = f(x)`` may be passed to save a forward."""
    if y is None:
        y = network(x)
    if theta is None:
        theta = random_affine(x.shape[0], device=x.device)
    xw, mask = warp(x, theta)
    yw, _ = warp(y, theta)
    return masked_mse(network(xw), yw, mask)
