"""Perceptual losses (Johnson et al. 2016; Gatys et al. 2016): content, Gram style, total variation.

One ``PerceptualLoss`` object serves the trainer and the Gatys optimiser alike, so a weight tuned
in one carries over to the other.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from fastnst.core.vgg import VGGFeatures


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C) with G = F Fᵀ / (C·H·W), always in fp32.

    Sums over H·W products overflow or lose precision in fp16/bf16, so autocast is disabled here.
    """
    n, c, h, w = features.shape
    with torch.autocast(device_type=features.device.type, enabled=False):
        f = features.float().reshape(n, c, h * w)
        return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between vertically and horizontally adjacent pixels (Mahendran &
    Vedaldi 2015, β = 2); penalises high-frequency noise in the output."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        return (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()


class PerceptualLoss(nn.Module):
    """``content_weight·Σ content MSE + style_weight·Σ_l w_l·‖G_l(out) − G_l(style)‖² + tv_weight·TV``.

    The style Grams are computed once by ``set_style`` and kept as non-persistent buffers: they
    follow ``.to(device)`` but stay out of state dicts and checkpoints.
    """

    def __init__(self, vgg: VGGFeatures, content_layers: Mapping[str, float],
                 style_layers: Mapping[str, float], content_weight: float = 1.0,
                 style_weight: float = 1e5, tv_weight: float = 0.0) -> None:
        super().__init__()
        self.vgg = vgg
        self.content_layers = dict(content_layers)
        self.style_layers = dict(style_layers)
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        self._all_layers = list(dict.fromkeys([*self.content_layers, *self.style_layers]))

    @property
    def layers(self) -> dict[str, object]:
        """Weights and layers, for model-file metadata and hyperparameter logs."""
        return {"vgg": self.vgg.arch, "vgg_weights": self.vgg.weights,
                "content_layers": self.content_layers, "style_layers": self.style_layers,
                "content_weight": self.content_weight, "style_weight": self.style_weight,
                "tv_weight": self.tv_weight}

    @torch.no_grad()
    def set_style(self, style: torch.Tensor) -> None:
        """style: (1, 3, H, W) in [0, 1]. Computes the target Grams once per run."""
        feats = self.vgg(style, self.style_layers)
        for name in self.style_layers:
            self.register_buffer(f"gram_{name}", gram_matrix(feats[name]), persistent=False)

    @property
    def has_style(self) -> bool:
        return all(hasattr(self, f"gram_{name}") for name in self.style_layers)

    def style_gram(self, name: str) -> torch.Tensor:
        try:
            return getattr(self, f"gram_{name}")
        except AttributeError:
            raise RuntimeError("PerceptualLoss.set_style must be called before computing the loss") from None

    @torch.no_grad()
    def content_targets(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """Content features, computed only as deep as the deepest content layer."""
        return self.vgg(content, self.content_layers)

    def forward(self, output: torch.Tensor, content: torch.Tensor | None = None,
                targets: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """output, content: (N, 3, H, W) in [0, 1]; ``targets`` may replace ``content`` when the
        content features are already known (the Gatys loop computes them once).
        Returns ``total``, ``content``, ``style``, ``tv`` and ``style/<layer>`` (weighted terms)."""
        if targets is None:
            if content is None:
                raise ValueError("pass content or targets")
            targets = self.content_targets(content)
        feats = self.vgg(output, self._all_layers)
        with torch.autocast(device_type=output.device.type, enabled=False):
            content_loss = sum(w * F.mse_loss(feats[n].float(), targets[n].float())
                               for n, w in self.content_layers.items())
            terms: dict[str, torch.Tensor] = {}
            for name, w in self.style_layers.items():
                g = gram_matrix(feats[name])
                terms[f"style/{name}"] = self.style_weight * w * F.mse_loss(g, self.style_gram(name).expand_as(g))
            style_loss = sum(terms.values())
            terms["content"] = self.content_weight * content_loss
            terms["style"] = style_loss
            terms["tv"] = self.tv_weight * total_variation(output)
            terms["total"] = terms["content"] + terms["style"] + terms["tv"]
        return terms
