"""Colour helpers: luminance-only transfer (Gatys et al. 2016, "Preserving Color in Neural
Artistic Style Transfer") and strength blending. Tensors are (N, 3, H, W) RGB in [0, 1]."""

from __future__ import annotations

import torch

# ITU-R BT.601 (full range), as JPEG uses.
_RGB_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCBCR_TO_RGB = torch.linalg.inv(_RGB_TO_YCBCR)


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> Y in [0, 1], Cb and Cr in [-0.5, 0.5]."""
    return torch.einsum("ij,njhw->nihw", _RGB_TO_YCBCR.to(x), x)


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", _YCBCR_TO_RGB.to(x), x)


def preserve_color(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The stylized luminance with the content's chroma: brush strokes, the photo's colours."""
    y = rgb_to_ycbcr(stylized)[:, :1]
    cbcr = rgb_to_ycbcr(content)[:, 1:]
    return ycbcr_to_rgb(torch.cat([y, cbcr], dim=1)).clamp(0, 1)


def blend(stylized: torch.Tensor, content: torch.Tensor, strength: float) -> torch.Tensor:
    """strength·stylized + (1 − strength)·content; 0 gives the content back exactly."""
    if strength >= 1:
        return stylized
    if strength <= 0:
        return content
    return torch.lerp(content, stylized, strength)
