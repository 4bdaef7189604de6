"""Temporal stability with known motion: random affine warps, the temporal loss and the flicker metrics.

Training (``loss.temporal_weight``): for each crop x and a small random affine warp W, penalise
‖f(W(x)) − W(f(x))‖² where W is defined (inside the image). A network that commutes with small
motions does not flicker on video, and needs no optical flow at inference. The same warp and
mask give the flicker metrics of ``scripts/quality/flicker.py``:

(a) Warping error on synthetic clips with known motion: frames made from a still image by small
    affine warps; mean squared difference between stylized frame t and stylized frame t−1 warped
    by the known motion, inside the valid mask (0 for a perfectly stable stylizer).
(b) On real clips, flicker ratio = mean |O_t − O_{t−1}| / mean |I_t − I_{t−1}|: how much more the
    output changes between frames than the input does. It counts the painted texture moving with the
    scene as change too, so it rewards flat styles and hides much of what the temporal loss does.
(c) On real clips with optical flow between the input frames (estimated by the caller), the warping
    error of Lai et al. 2018: ‖O_t − warp(O_{t−1})‖² where the flow is consistent. Texture that moves
    with the scene costs nothing; flicker does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

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


Stylize = Callable[[torch.Tensor], torch.Tensor]


def synthetic_clip(image: torch.Tensor, frames: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, H, W) still -> (frames, 3, H, W) clip where frame t = warp(frame t−1, θ_t), and the
    (frames−1, 2, 3) motions θ. The motion is known exactly, so no optical flow is needed."""
    g = torch.Generator().manual_seed(seed)
    thetas = random_affine(frames - 1, generator=g)
    clip = [image]
    for theta in thetas:
        clip.append(warp(clip[-1], theta[None])[0])
    return torch.cat(clip), thetas


@torch.no_grad()
def warping_error(stylize: Stylize, clip: torch.Tensor, thetas: torch.Tensor) -> float:
    """Mean over t of ‖O_t − W_t(O_{t−1})‖² inside the valid mask, where W_t maps frame t−1 to t.
    The valid mask also excludes pixels that came from outside frame t−1's own valid area."""
    out = stylize(clip)
    valid = torch.ones_like(clip[:1, :1])
    errors = []
    for t, theta in enumerate(thetas, start=1):
        warped, mask = warp(out[t - 1:t], theta[None])
        valid, _ = warp(valid, theta[None])
        valid = (valid > 0.999).to(clip.dtype) * mask
        errors.append(masked_mse(out[t:t + 1], warped, valid))
    return float(torch.stack(errors).mean())


@torch.no_grad()
def flicker_ratio(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """``pairs`` yields (input frame, output frame), each (3, H, W) in [0, 1], in order."""
    prev: tuple[torch.Tensor, torch.Tensor] | None = None
    d_in = d_out = 0.0
    for frame_in, frame_out in pairs:
        if prev is not None:
            d_in += float((frame_in - prev[0]).abs().mean())
            d_out += float((frame_out - prev[1]).abs().mean())
        prev = (frame_in, frame_out)
    if d_in == 0:
        return float("nan") if d_out == 0 else float("inf")
    return d_out / d_in


def _pixels(h: int, w: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Each pixel's (row, column) coordinates, two (H, W) tensors."""
    return torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")


def flow_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample (N, C, H, W) ``x`` at p + ``flow``(p): ``flow`` (N, 2, H, W) in pixels (x, y), pointing from
    the frame being built into ``x``'s frame (backward flow). Edges are repeated outside the image."""
    h, w = x.shape[-2:]
    ys, xs = _pixels(h, w, x.dtype)
    gx = (xs + flow[:, 0]) / max(w - 1, 1) * 2 - 1
    gy = (ys + flow[:, 1]) / max(h - 1, 1) * 2 - 1
    grid = torch.stack([gx, gy], -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def consistent_flow_mask(backward: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) mask of the pixels whose backward flow (t -> t−1) the forward flow (t−1 -> t) undoes,
    and whose source lies inside the frame: occlusions and bad flow are left out (the usual test of
    Sundaram et al. 2010, as in Ruder et al. 2016 and Lai et al. 2018)."""
    forward_there = flow_warp(forward, backward)
    mismatch = ((backward + forward_there) ** 2).sum(1, keepdim=True)
    scale = (backward ** 2).sum(1, keepdim=True) + (forward_there ** 2).sum(1, keepdim=True)
    h, w = backward.shape[-2:]
    ys, xs = _pixels(h, w, backward.dtype)
    tx, ty = xs + backward[:, 0:1], ys + backward[:, 1:2]
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return ((mismatch <= 0.01 * scale + 0.5) & inside).to(backward.dtype)


@torch.no_grad()
def flow_warping_error(frames: Iterable[torch.Tensor], flows: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Mean over t of ‖O_t − warp(O_{t−1})‖² over the pixels where the flow is consistent (Lai et al.
    2018's E_warp): ``frames`` yields (3, H, W) outputs in order, ``flows`` the (backward, forward) flows
    between consecutive *input* frames, each (2, H, W) in pixels. A stylizer that moves exactly with the
    picture scores what the input itself scores (the flow's own error); flicker adds to it."""
    errors = []
    previous: torch.Tensor | None = None
    flow_iter = iter(flows)
    for frame in frames:
        if previous is not None:
            backward, forward = (f[None] for f in next(flow_iter))
            mask = consistent_flow_mask(backward, forward)
            errors.append(masked_mse(frame[None], flow_warp(previous[None], backward), mask))
        previous = frame
    if not errors:
        raise ValueError("the flow warping error needs at least two frames")
    return float(torch.stack(errors).mean())
