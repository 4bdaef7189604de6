"""Perceptual losses (Johnson et al. 2016; Gatys et al. 2016): content, Gram style, total variation,
and the temporal term.

One ``PerceptualLoss`` object serves the trainer and the Gatys optimiser alike, so a weight tuned
in one carries over to the other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fastnst.core.errors import FastNSTError
from fastnst.core.temporal import temporal_loss
from fastnst.core.vgg import VGGFeatures

log = logging.getLogger(__name__)
STYLE_NORMS = ("none", "target")
CONTENT_NORMS = STYLE_NORMS  # the same two choices: a raw MSE, or one relative to the target
PALETTE_PIXELS = 16384  # the painting's colours kept for the palette term
PALETTE_DIRECTIONS = 64  # fixed projections: RGB is 3-D, 64 directions cover its sphere densely
PALETTE_SAMPLED_DIRECTIONS = 16  # of them, drawn per training step (``sample_palette``)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C) with G = F Fᵀ / (C·H·W), returned in fp32.

    bf16 features (mixed-precision training) are multiplied in bf16: the matrix units accumulate in fp32
    and only the result is rounded (a relative error of 2⁻⁸, far below the style errors a run sees), and
    it cut a 256 px training step by a sixth on an AVX512-BF16 CPU (docs/speed.md). fp16 could overflow
    the sums, and fp32 stays fp32: both are multiplied in fp32.
    """
    n, c, h, w = features.shape
    if features.dtype == torch.bfloat16:
        return _self_product(features).float() / (c * h * w)
    with torch.autocast(device_type=features.device.type, enabled=False):
        return _self_product(features.float()) / (c * h * w)


def _self_product(features: torch.Tensor) -> torch.Tensor:
    """F Fᵀ with F (N, C, H·W), a view in the map's own layout: for channels-last maps (the VGG's on a CPU)
    the gradient then comes back channels-last too. An NCHW gradient made every later ReLU backward and
    gradient sum iterate across two layouts (3x slower ReLUs in a training step)."""
    n, c, h, w = features.shape
    if c > 1 and features.is_contiguous(memory_format=torch.channels_last):
        return _Gram.apply(features.permute(0, 2, 3, 1).reshape(n, h * w, c).transpose(1, 2))
    return _Gram.apply(features.reshape(n, c, h * w))


class _Gram(torch.autograd.Function):
    """``F Fᵀ`` for F (N, C, P) with its gradient ``(G' + G'ᵀ) F`` in one product, in F's layout. Autograd
    sees two operands and takes two products and their sum, through a transposed copy: in a bf16 training
    step at 256 px the five Grams' backward took 3x as long (0.21 s against 0.08 s with their forward)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, f: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(f)
        return torch.bmm(f, f.transpose(1, 2))

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (f,) = ctx.saved_tensors
        sym = (grad + grad.transpose(1, 2)).to(f.dtype)
        if f.stride(1) == 1:  # channels-last: (N, P, C) in memory, and so is the gradient
            return torch.bmm(f.transpose(1, 2), sym).transpose(1, 2)
        return torch.bmm(sym, f)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between vertically and horizontally adjacent pixels (Mahendran &
    Vedaldi 2015, β = 2); penalises high-frequency noise in the output."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        return (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()


def sliced_palette(pixels: torch.Tensor, targets: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Sliced Wasserstein-2 distance between each image's colours and its target colours (Heitz et al.
    2021, on RGB pixels): both projected on ``directions`` (3, K), sorted, and compared quantile by
    quantile. ``pixels`` (N, P, 3), ``targets`` (N, Q, 3), any P and Q; returns the mean squared
    difference. A Gram matrix sees a colour distribution's first two moments; this sees all of it, so
    the painting's yellows land on some pixels instead of its average blue landing on all of them."""
    return _palette_distance(pixels, sorted_projections(targets, directions), directions)


def sorted_projections(pixels: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """(N, P, 3) pixels -> (N, P, K) their projections on ``directions`` (3, K), sorted along P."""
    with torch.autocast(device_type=pixels.device.type, enabled=False):
        return (pixels.float() @ directions).sort(dim=1).values


def _palette_distance(pixels: torch.Tensor, theirs: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """``sliced_palette`` with the targets' sorted projections already known (the loss keeps them)."""
    with torch.autocast(device_type=pixels.device.type, enabled=False):
        mine = sorted_projections(pixels, directions)
        p, q = mine.shape[1], theirs.shape[1]
        index = ((torch.arange(p, device=pixels.device) + 0.5) * (q / p)).long().clamp_max(q - 1)
        return (mine - theirs[:, index]).pow(2).mean()


class PerceptualLoss(nn.Module):
    """``content_weight·Σ content MSE + style_weight·Σ_l w_l·‖G_l(out) − G_l(style)‖²/n_l + tv_weight·TV
    + palette_weight·palette + temporal_weight·temporal``.

    ``style_norm``: ``none`` (n_l = 1, Johnson et al.) or ``target`` (n_l = mean(G_l(style)²), so each
    layer's term is a relative error). A VGG's Gram magnitudes span orders of magnitude from relu1_2 to
    relu4_3 (measured: 1e-4 to 1e-12 with the stand-in VGG), so with ``none`` the shallowest layer
    (colour, fine grain) decides the style alone and the deep layers (strokes, motifs) count for
    nothing; ``target`` lets every layer count as its weight says, whatever the VGG's scale.

    ``palette_weight`` adds ``sliced_palette`` between the output's pixels and the painting's: the
    colours of the painting, not only their mean and covariance (see ``sliced_palette``).

    ``content_norm``: ``none`` (Johnson et al.'s MSE) or ``target`` (the MSE divided by the mean square
    of the photo's features, a relative error). On the ImageNet VGG16 the photo's relu2_2 features
    have a mean square of about 44 (measured on tubingen.jpg, 256 px), so with ``none`` a content
    weight means something else for every VGG and layer; with ``target`` (and ``style_norm=target``)
    all three weights compare relative errors, which is what lets one set of weights carry over.

    The style Grams are computed once by ``set_style`` and kept as non-persistent buffers: they
    follow ``.to(device)`` but stay out of state dicts and checkpoints.
    """

    def __init__(self, vgg: VGGFeatures, content_layers: Mapping[str, float],
                 style_layers: Mapping[str, float], content_weight: float = 1.0,
                 style_weight: float = 1e5, tv_weight: float = 0.0, temporal_weight: float = 0.0,
                 style_norm: str = "none", content_norm: str = "none", palette_weight: float = 0.0) -> None:
        super().__init__()
        if style_norm not in STYLE_NORMS:
            raise FastNSTError(f"style_norm must be one of {', '.join(STYLE_NORMS)}, got {style_norm!r}")
        if content_norm not in CONTENT_NORMS:
            raise FastNSTError(f"content_norm must be one of {', '.join(CONTENT_NORMS)}, got {content_norm!r}")
        for name, value in {"content_weight": content_weight, "style_weight": style_weight,
                            "tv_weight": tv_weight, "temporal_weight": temporal_weight,
                            "palette_weight": palette_weight}.items():
            if not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
                raise FastNSTError(f"{name} must be a finite number >= 0, got {value!r}")
        self.vgg = vgg
        self.content_layers = dict(content_layers)
        self.style_layers = dict(style_layers)
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        self.temporal_weight, self.style_norm, self.content_norm = temporal_weight, style_norm, content_norm
        self.palette_weight = palette_weight
        self._all_layers = list(dict.fromkeys([*self.content_layers, *self.style_layers]))

    @classmethod
    def from_spec(cls, vgg: str = "vgg16", vgg_weights: str = "imagenet",
                  content_layers: Mapping[str, float] | None = None, style_layers: Mapping[str, float] | None = None,
                  content_weight: float = 1.0, style_weight: float = 1e5, tv_weight: float = 0.0,
                  temporal_weight: float = 0.0, style_norm: str = "none", content_norm: str = "none",
                  palette_weight: float = 0.0, seed: int = 0) -> PerceptualLoss:
        """Build the loss and its VGG from plain values (a ``conf/loss`` group, or a model file's
        ``loss`` metadata). ``vgg_weights``: ``imagenet``, ``random`` (seeded; tests only) or a path."""
        content_layers = dict(content_layers or {"relu2_2": 1.0})
        style_layers = dict(style_layers or {"relu1_2": 1.0, "relu2_2": 1.0, "relu3_3": 1.0, "relu4_3": 1.0})
        if str(vgg_weights) == "random":
            log.warning("RANDOM VGG WEIGHTS: results will not look like the style (tests and smoke runs only)")
        features = VGGFeatures(vgg, [*content_layers, *style_layers], weights=str(vgg_weights), seed=seed)
        return cls(features, content_layers, style_layers, content_weight, style_weight, tv_weight,
                   temporal_weight, style_norm, content_norm, palette_weight)

    @property
    def spec(self) -> dict[str, Any]:
        """The plain values ``from_spec`` takes: model-file metadata and hyperparameter logs."""
        return {"vgg": self.vgg.arch, "vgg_weights": self.vgg.weights,
                "content_layers": self.content_layers, "style_layers": self.style_layers,
                "content_weight": self.content_weight, "style_weight": self.style_weight,
                "tv_weight": self.tv_weight, "temporal_weight": self.temporal_weight,
                "style_norm": self.style_norm, "content_norm": self.content_norm,
                "palette_weight": self.palette_weight}

    @torch.no_grad()
    def set_style(self, style: torch.Tensor | Sequence[torch.Tensor]) -> None:
        """style: (1, 3, H, W) in [0, 1], or a list of such images (any sizes) for a multi-style
        network, whose position is the ``style_index`` that ``forward`` takes. Computes the target
        Grams (S, C, C) and their norms (S,) once per run."""
        styles = [style] if isinstance(style, torch.Tensor) else list(style)
        feats = [self.vgg(s, self.style_layers) for s in styles]
        for name in self.style_layers:
            gram = torch.cat([gram_matrix(f[name]) for f in feats])
            norm = gram.pow(2).mean(dim=(1, 2)).clamp_min(1e-30) if self.style_norm == "target" \
                else torch.ones(len(styles))
            self.register_buffer(f"gram_{name}", gram, persistent=False)
            self.register_buffer(f"gram_norm_{name}", norm.to(gram), persistent=False)
        # The same number of pixels from each painting (any sizes), drawn once with a fixed seed.
        g = torch.Generator().manual_seed(0)
        pixels = []
        for s in styles:
            flat = s[0].reshape(3, -1).T
            pixels.append(flat[torch.randint(len(flat), (PALETTE_PIXELS,), generator=g).to(flat.device)])
        style_pixels = torch.stack(pixels).float()
        # Fixed (not redrawn per call), so the objective is deterministic: L-BFGS in the Gatys loop needs that.
        directions = torch.randn(3, PALETTE_DIRECTIONS, generator=g)
        directions = (directions / directions.norm(dim=0, keepdim=True)).to(style_pixels)
        self.register_buffer("palette_directions", directions, persistent=False)
        # The paintings' side of the distance never changes: projected and sorted once per run, not per step.
        self.register_buffer("palette_targets", sorted_projections(style_pixels, directions), persistent=False)

    @property
    def has_style(self) -> bool:
        return all(hasattr(self, f"gram_{name}") for name in self.style_layers)

    @property
    def num_styles(self) -> int:
        return self.style_gram(next(iter(self.style_layers))).shape[0] if self.style_layers else 1

    def style_gram(self, name: str) -> torch.Tensor:
        """Layer ``name``'s target Grams, (S, C, C)."""
        try:
            return getattr(self, f"gram_{name}")
        except AttributeError:
            raise RuntimeError("PerceptualLoss.set_style must be called before computing the loss") from None

    @torch.no_grad()
    def content_targets(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """Content features, computed only as deep as the deepest content layer."""
        return self.vgg(content, self.content_layers)

    def forward(self, output: torch.Tensor, content: torch.Tensor | None = None,
                targets: Mapping[str, torch.Tensor] | None = None,
                network: Callable[[torch.Tensor], torch.Tensor] | None = None,
                style_index: torch.Tensor | None = None, sample_palette: bool = False) -> dict[str, torch.Tensor]:
        """output, content: (N, 3, H, W) in [0, 1]; ``targets`` may replace ``content`` when the
        content features are already known (the Gatys loop computes them once). ``network``, with
        ``output = network(content)``, is needed for the temporal term (``temporal_weight > 0``).
        ``style_index`` (N,): which of ``set_style``'s styles each image is judged against (default 0).
        ``sample_palette``: judge the palette on ``PALETTE_PIXELS`` random pixels of each output and
        ``PALETTE_SAMPLED_DIRECTIONS`` random directions rather than all of them (training: sorting every
        pixel's projections was a fifth of a 256 px step; an optimiser of pixels such as L-BFGS needs the
        fixed objective of all of them).
        Returns ``total``, ``content``, ``style``, ``tv``, ``style/<layer>`` and, with a temporal
        weight, ``temporal`` (all weighted)."""
        if targets is None:
            if content is None:
                raise ValueError("pass content or targets")
            targets = self.content_targets(content)
        feats = self.vgg(output, self._all_layers)
        with torch.autocast(device_type=output.device.type, enabled=False):
            content_loss = sum(w * self._content_error(feats[n].float(), targets[n].float())
                               for n, w in self.content_layers.items())
            terms: dict[str, torch.Tensor] = {}
            for name, w in self.style_layers.items():
                g = gram_matrix(feats[name])
                target, norm = self.style_gram(name), getattr(self, f"gram_norm_{name}")
                if style_index is None:  # one style: its Gram broadcast over the batch, never copied
                    err = (g - target[:1]).pow(2).mean() / norm[0]
                else:
                    err = ((g - target[style_index]).pow(2).mean(dim=(1, 2)) / norm[style_index]).mean()
                terms[f"style/{name}"] = self.style_weight * w * err
            style_loss = sum(terms.values())
            terms["content"] = self.content_weight * content_loss
            terms["style"] = style_loss
            terms["tv"] = self.tv_weight * total_variation(output)
            terms["total"] = terms["content"] + terms["style"] + terms["tv"]
            if self.palette_weight > 0:
                terms["palette"] = self.palette_weight * self._palette(output, style_index, sample_palette)
                terms["total"] = terms["total"] + terms["palette"]
        if self.temporal_weight > 0:
            if network is None or content is None:
                raise ValueError("the temporal term needs the network and the content batch")
            terms["temporal"] = self.temporal_weight * temporal_loss(network, content, output)
            terms["total"] = terms["total"] + terms["temporal"]
        return terms

    def _palette(self, output: torch.Tensor, style_index: torch.Tensor | None, sample: bool) -> torch.Tensor:
        targets = self.palette_targets[:1].expand(len(output), -1, -1) if style_index is None \
            else self.palette_targets[style_index]
        pixels, directions = output.flatten(2).transpose(1, 2), self.palette_directions
        if sample:  # subsets drawn afresh each step
            if pixels.shape[1] > PALETTE_PIXELS:
                pixels = pixels[:, torch.randint(pixels.shape[1], (PALETTE_PIXELS,), device=pixels.device)]
            # The distance is a mean over directions, so a random quarter of them is an unbiased estimate of
            # it, at a quarter of the sorting (the largest cost outside the convolutions, before: 155 -> 40 ms a step).
            chosen = torch.randperm(directions.shape[1], device=directions.device)[:PALETTE_SAMPLED_DIRECTIONS]
            directions, targets = directions[:, chosen], targets[..., chosen]
        return _palette_distance(pixels, targets, directions)

    def _content_error(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        err = F.mse_loss(features, target)
        return err / target.pow(2).mean().clamp_min(1e-30) if self.content_norm == "target" else err
