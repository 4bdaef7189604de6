"""The optimisation baseline of Gatys et al. 2016 ("Image Style Transfer Using Convolutional Neural
Networks"): the pixels of the output are optimised directly against the same ``PerceptualLoss``
that trains the feed-forward networks, so weights tuned in one carry over to the other.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from fastnst.core.color import preserve_color as keep_color
from fastnst.core.errors import FastNSTError
from fastnst.core.images import fit_long_side, resize
from fastnst.core.losses import PerceptualLoss

# (global step, weighted loss terms, current image) -> None
Callback = Callable[[int, dict[str, torch.Tensor], torch.Tensor], None]


@dataclass(frozen=True)
class GatysOptions:
    """How to optimise. ``steps`` per scale; ``optimizer``: lbfgs (Gatys et al.) or adam; ``init``:
    content | noise | style; ``scales``: long sides for coarse-to-fine (e.g. 256, 512, 1024), each
    scale initialised from the last one upsampled, None: once at the content's own size;
    ``preserve_color``: keep the photo's colours (Gatys et al. 2016b, luminance transfer)."""

    steps: int = 500
    optimizer: str = "lbfgs"
    lr: float = 1.0
    init: str = "content"
    scales: tuple[int, ...] | None = None
    preserve_color: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in ("lbfgs", "adam"):
            raise FastNSTError(f"optimizer must be lbfgs or adam, got {self.optimizer!r}")
        if self.init not in ("content", "noise", "style"):
            raise FastNSTError(f"init must be content, noise or style, got {self.init!r}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise FastNSTError(f"steps must be a whole number >= 1, got {self.steps!r}")
        if not self.lr > 0:
            raise FastNSTError(f"lr must be positive, got {self.lr!r}")
        if self.scales is not None:
            object.__setattr__(self, "scales", tuple(int(s) for s in self.scales))
            if not self.scales or min(self.scales) < 8:
                raise FastNSTError(f"scales must be long sides of at least 8 px, got {list(self.scales)}")


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
            raise FastNSTError("init=style needs the style image")
        return resize(style, tuple(content.shape[-2:]))
    raise FastNSTError(f"init must be content, noise or style, got {init!r}")


def optimize(loss: PerceptualLoss, content: torch.Tensor, options: GatysOptions = GatysOptions(),
             style: torch.Tensor | None = None, callback: Callback | None = None) -> GatysResult:
    """Optimise an image so that ``loss(image, content)`` is small.

    ``loss`` must have its style set. ``content``: (1, 3, H, W) in [0, 1], on the loss's device;
    ``style`` is needed only for ``init="style"``. The image is clamped to [0, 1] after every step.
    A non-finite loss stops the run and the last good image is returned (``diverged_at`` says when).
    """
    scales = options.scales
    result = GatysResult(image=content)
    image: torch.Tensor | None = None
    step = 0
    for size in scales or [max(content.shape[-2:])]:
        target = fit_long_side(content, size) if scales else content
        if image is None:
            image = initial_image(options.init, target, style, options.seed)
        else:
            image = resize(image, tuple(target.shape[-2:]))
        targets = loss.content_targets(target)  # once per scale, not per iteration
        image, step = _run_scale(loss, image, targets, options, step, result, callback)
        if result.diverged_at is not None:
            return result
        result.image = image
    if options.preserve_color:
        result.image = keep_color(result.image, resize(content, tuple(result.image.shape[-2:])))
    return result


def _run_scale(loss: PerceptualLoss, image: torch.Tensor, targets: dict[str, torch.Tensor],
               options: GatysOptions, step: int, result: GatysResult,
               callback: Callback | None) -> tuple[torch.Tensor, int]:
    pixels = image.detach().clone().requires_grad_(True)
    opt = (torch.optim.LBFGS([pixels], lr=options.lr, max_iter=1, history_size=50) if options.optimizer == "lbfgs"
           else torch.optim.Adam([pixels], lr=options.lr))
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
    for _ in range(options.steps):
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
