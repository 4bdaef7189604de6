"""How much does a stylizer flicker? Two measures (``scripts/flicker.py`` prints both).

(a) Warping error on synthetic clips with known motion: frames made from a still image by small
    affine warps; mean squared difference between stylized frame t and stylized frame t−1 warped
    by the known motion, inside the valid mask (0 for a perfectly stable stylizer).
(b) On real clips, flicker ratio = mean |O_t − O_{t−1}| / mean |I_t − I_{t−1}|: how much more the
    output changes between frames than the input does (1 ≈ no added flicker).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from fastnst.temporal import masked_mse, random_affine, warp

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
