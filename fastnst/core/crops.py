"""The one way photos are cut into training crops: training from a folder, training from a prepared array,
and fitting a new style all draw the same crops, so a fitted style meets the photos its base was trained on.

A crop is square, its side a random fraction (``CROP_SCALE``) of the photo's short side, at a random place,
mirrored half the time, then resized to the training size. Square, because Johnson et al. trained on square
images and a stretched crop teaches the network stretched brush marks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CROP_SCALE = (2 / 3, 1.0)  # the crop's side over the photo's short side


def random_crop(image: torch.Tensor, size: int, scale: tuple[float, float] = CROP_SCALE,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """A random ``size`` x ``size`` crop of ``image`` (C x H x W, floats in [0, 1]); ``generator`` makes it
    reproducible (default: torch's global generator, seeded per data-loader worker)."""
    h, w = image.shape[-2:]
    short = min(h, w)
    low, high = (max(1, min(short, round(short * f))) for f in scale)
    side = int(torch.randint(low, high + 1, (1,), generator=generator))
    top = int(torch.randint(h - side + 1, (1,), generator=generator))
    left = int(torch.randint(w - side + 1, (1,), generator=generator))
    crop = _resize(image[..., top:top + side, left:left + side], size)
    if torch.rand(1, generator=generator) < 0.5:
        crop = crop.flip(-1)
    return crop


def centre_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """The largest centred square of ``image``, resized to ``size`` x ``size`` (held-out samples)."""
    h, w = image.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return _resize(image[..., top:top + side, left:left + side], size)


def _resize(square: torch.Tensor, size: int) -> torch.Tensor:
    if square.shape[-1] == size:
        return square.clone()
    out = F.interpolate(square.unsqueeze(0), size=(size, size), mode="bilinear", antialias=True,
                        align_corners=False)[0]
    return out.clamp(0, 1)  # antialiased bilinear overshoots a little at hard edges
