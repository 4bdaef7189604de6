"""Perceptual losses (Johnson et al. 2016; Gatys et al. 2016): the sum of the loss terms in
``fastnst/core/terms`` (content, Gram style, total variation, palette, sliced-Wasserstein style, temporal),
all reading one pass of the VGG.

One ``PerceptualLoss`` serves the trainer, the Gatys optimiser and the painting fitter alike, so a weight
tuned in one carries over to the others.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from fastnst.core.errors import FastNSTError
from fastnst.core.terms import LossInputs, Term, all_terms, loss_keys
from fastnst.core.terms.gram import gram_matrix
from fastnst.core.terms.palette import sliced_palette, sorted_projections
from fastnst.core.terms.tv import total_variation
from fastnst.core.vgg import VGGFeatures

__all__ = ["PerceptualLoss", "gram_matrix", "sliced_palette", "sorted_projections", "total_variation"]
log = logging.getLogger(__name__)


def build_terms(options: Mapping[str, Any]) -> dict[str, Term]:
    """One instance of every term, each given its own keys of ``options`` (the rest take their defaults)."""
    unknown = sorted(set(options) - set(loss_keys()))
    if unknown:
        raise FastNSTError(f"unknown loss setting(s) {', '.join(unknown)}; known: {', '.join(loss_keys())}",
                           param=unknown[0])
    return {t.name: t(**{k: options[k] for k in t.keys if k in options}) for t in all_terms()}


def _used(terms: Mapping[str, Term]) -> list[Term]:
    return [t for t in terms.values() if t.active or t.always_reported]


def vgg_layers(terms: Mapping[str, Term]) -> list[str]:
    """Every VGG layer the used terms read, of the output, the photo or the paintings."""
    return list(dict.fromkeys(n for t in _used(terms) for n in [*t.output_layers(), *t.content_layers(),
                                                               *t.style_layers()]))


class PerceptualLoss(nn.Module):
    """``Σ_terms weight · term``: by default Johnson et al.'s ``content + style + tv``; see each term's module.

    ``PerceptualLoss(vgg, content_layers, style_layers, style_weight=…, …)``: any key of any term
    (``fastnst.core.terms.loss_keys()``), by keyword. Terms at weight 0 cost nothing (content, style and tv
    are still reported). The paintings' targets are computed once by ``set_style`` and kept as non-persistent
    buffers: they follow ``.to(device)`` but stay out of state dicts and checkpoints.
    """

    def __init__(self, vgg: VGGFeatures, content_layers: Mapping[str, float] | None = None,
                 style_layers: Mapping[str, float] | None = None, **options: Any) -> None:
        super().__init__()
        layers = {"content_layers": content_layers, "style_layers": style_layers}
        self.terms = nn.ModuleDict(build_terms({**{k: v for k, v in layers.items() if v is not None}, **options}))
        self.vgg = vgg
        used = _used(self.terms)
        self._output_layers = list(dict.fromkeys(n for t in used for n in t.output_layers()))
        self._content_layers = list(dict.fromkeys(n for t in used for n in t.content_layers()))
        self._style_layers = list(dict.fromkeys(n for t in used for n in t.style_layers()))

    @classmethod
    def from_spec(cls, *, vgg: str = "vgg16", vgg_weights: str = "imagenet", seed: int = 0,
                  **options: Any) -> PerceptualLoss:
        """Build the loss and its VGG from plain values (a ``conf/loss`` group, or a model file's ``loss``
        metadata), by keyword. ``vgg_weights``: ``imagenet``, ``random`` (seeded; tests only) or a path."""
        if str(vgg_weights) == "random":
            log.warning("RANDOM VGG WEIGHTS: results will not look like the style (tests and smoke runs only)")
        features = VGGFeatures(vgg, vgg_layers(build_terms(options)), weights=str(vgg_weights), seed=seed)
        return cls(features, **options)

    @property
    def spec(self) -> dict[str, Any]:
        """The plain values ``from_spec`` takes: model-file metadata and hyperparameter logs."""
        spec: dict[str, Any] = {"vgg": self.vgg.arch, "vgg_weights": self.vgg.weights}
        for term in self.terms.values():
            spec.update(term.options)
        return spec

    def __getattr__(self, name: str) -> Any:
        # A term's key as an attribute (`loss.style_weight`), as before terms were parts.
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in loss_keys() and "terms" in self._modules:
                return self.option(name)
            raise

    def option(self, key: str) -> Any:
        """One key's value (``style_weight``, ``content_layers``, …)."""
        return self.spec[key]

    @property
    def content_layers(self) -> dict[str, float]:
        return self.option("content_layers")

    @property
    def style_layers(self) -> dict[str, float]:
        return self.option("style_layers")

    @property
    def temporal_weight(self) -> float:
        return self.option("temporal_weight")

    @torch.no_grad()
    def set_style(self, style: torch.Tensor | Sequence[torch.Tensor]) -> None:
        """style: (1, 3, H, W) in [0, 1], or a list of such images (any sizes) for a multi-style network, whose
        position is the ``style_index`` that ``forward`` takes. Each term computes its targets once."""
        styles = [style] if isinstance(style, torch.Tensor) else list(style)
        features = [self.vgg(s, self._style_layers) for s in styles]
        for term in _used(self.terms):
            term.set_style(styles, features)

    @property
    def has_style(self) -> bool:
        return all(t.has_style for t in _used(self.terms))

    @property
    def num_styles(self) -> int:
        grams = self.terms["style"]
        return grams.gram(next(iter(self.style_layers))).shape[0] if self.style_layers else 1

    def style_gram(self, name: str) -> torch.Tensor:
        """Layer ``name``'s target Grams, (S, C, C)."""
        return self.terms["style"].gram(name)

    @torch.no_grad()
    def content_targets(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """The photo's features, computed only as deep as the deepest content layer."""
        return self.vgg(content, self._content_layers)

    def forward(self, output: torch.Tensor, content: torch.Tensor | None = None,
                targets: Mapping[str, torch.Tensor] | None = None,
                network: Callable[[torch.Tensor], torch.Tensor] | None = None,
                style_index: torch.Tensor | None = None, sample: bool = False) -> dict[str, torch.Tensor]:
        """output, content: (N, 3, H, W) in [0, 1]; ``targets`` may replace ``content`` when the photo's
        features are already known (the Gatys loop computes them once). ``network``, with ``output =
        network(content)``, is needed by the temporal term. ``style_index`` (N,): which of ``set_style``'s
        paintings each image is judged against (default the first). ``sample``: a training step, where terms
        may judge a random subset (an unbiased estimate); an optimiser of pixels such as L-BFGS needs the
        fixed objective. Returns each used term (weighted), its parts (``style/<layer>``) and ``total``."""
        if targets is None:
            if content is None:
                raise ValueError("pass content or targets")
            targets = self.content_targets(content)
        inputs = LossInputs(output, content, self.vgg(output, self._output_layers), targets, style_index,
                            network, sample)
        result: dict[str, torch.Tensor] = {}
        total = None
        for term in _used(self.terms):
            fp32 = not term.under_autocast
            with torch.autocast(output.device.type, enabled=False) if fp32 else contextlib.nullcontext():
                values = term(inputs)
            result.update(values)
            total = values[term.name] if total is None else total + values[term.name]
        result["total"] = total
        return result
