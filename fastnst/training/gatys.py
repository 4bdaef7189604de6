"""The optimisation baseline of Gatys et al. 2016 ("Image Style Transfer Using Convolutional Neural
Networks"): the pixels of the output are optimised directly against the same ``PerceptualLoss``
that trains the feed-forward networks, so weights tuned in one carry over to the other.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from fastnst.core.color import preserve_color as keep_color
from fastnst.core.errors import FastNSTError
from fastnst.core.images import fit_long_side, resize
from fastnst.core.losses import PerceptualLoss

# (global step, weighted loss terms, current image) -> None
Callback = Callable[[int, dict[str, torch.Tensor], torch.Tensor], None]


@dataclass
class GatysResult:
    image: torch.Tensor  # (1, 3, H, W) in [0, 1]: the lowest-loss image (the last good one after a NaN)
    losses: list[float] = field(default_factory=list)  # total loss per iteration, all scales
    diverged_at: int | None = None  # the iteration whose loss was not finite, if any


def initial_image(init: str, content: torch.Tensor, style: torch.Tensor | None, seed: int) -> torch.Tensor:
    """``content``: the photo; ``noise``: uniform white noise (Gatys et al.); ``style``: the style image
    resized to the photo's size."""
    if init == "content":
        return content.clone()
    if init == "noise":
        g = torch.Generator().manual_seed(seed)
        return torch.rand(content.shape, generator=g).to(content)
    if init == "style":
        if style is None:
            raise FastNSTError("optim.init=style needs the style image")
        return resize(style, tuple(content.shape[-2:]))
    raise FastNSTError(f"unknown optim.init {init!r}; choose content, noise or style")


def optimize(loss: PerceptualLoss, content: torch.Tensor, steps: int = 500, optimizer: str = "lbfgs",
             lr: float = 1.0, init: str = "content", style: torch.Tensor | None = None,
             scales: Sequence[int] | None = None, preserve_color: bool = False, seed: int = 0,
             callback: Callback | None = None) -> GatysResult:
    """Optimise an image so that ``loss(image, content)`` is small.

    ``loss`` must have its style set. ``content``: (1, 3, H, W) in [0, 1], on the loss's device.
    ``scales``: long sides for coarse-to-fine (e.g. 256, 512, 1024), ``steps`` at each, every scale
    initialised from the last one upsampled; None runs once at the content's own size.
    The image is clamped to [0, 1] after every step. A non-finite loss stops the run and the last
    good image is returned (``diverged_at`` says when).
    """
    if optimizer not in ("lbfgs", "adam"):
        raise FastNSTError(f"unknown optim.optimizer {optimizer!r}; choose lbfgs or adam")
    result = GatysResult(image=content)
    image: torch.Tensor | None = None
    step = 0
    for size in scales or [max(content.shape[-2:])]:
        target = fit_long_side(content, size) if scales else content
        if image is None:
            image = initial_image(init, target, style, seed)
        else:
            image = resize(image, tuple(target.shape[-2:]))
        targets = loss.content_targets(target)  # once per scale, not per iteration
        image, step = _run_scale(loss, image, targets, steps, optimizer, lr, step, result, callback)
        if result.diverged_at is not None:
            return result
        result.image = image
    if preserve_color:
        result.image = keep_color(result.image, resize(content, tuple(result.image.shape[-2:])))
    return result


def _run_scale(loss: PerceptualLoss, image: torch.Tensor, targets: dict[str, torch.Tensor], steps: int,
               optimizer: str, lr: float, step: int, result: GatysResult,
               callback: Callback | None) -> tuple[torch.Tensor, int]:
    pixels = image.detach().clone().requires_grad_(True)
    opt = (torch.optim.LBFGS([pixels], lr=lr, max_iter=1, history_size=50) if optimizer == "lbfgs"
           else torch.optim.Adam([pixels], lr=lr))
    last: dict[str, torch.Tensor] = {}

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        terms = loss(pixels, targets=targets)
        terms["total"].backward()
        last.update(terms)
        return terms["total"]

    # The loss evaluated in a step is that of the image before the step. L-BFGS without a line search
    # occasionally jumps far uphill late in a run (measured at 256 px), so the lowest-loss image is kept.
    best, best_loss = pixels.detach().clone(), float("inf")
    for _ in range(steps):
        before = pixels.detach().clone()
        opt.step(closure)
        total = float(last["total"].detach())
        if not math.isfinite(total):
            result.image, result.diverged_at = best if best_loss < float("inf") else before, step
            return result.image, step
        if total < best_loss:
            best, best_loss = before, total
        with torch.no_grad():
            pixels.clamp_(0, 1)
        result.losses.append(total)
        step += 1
        if callback is not None:
            callback(step, {k: v.detach() for k, v in last.items()}, pixels.detach())
    final = float(loss(pixels.detach(), targets=targets)["total"])
    return (pixels.detach() if final <= best_loss else best), step
