"""Choosing the style of a multi-style network: one style, a blend, or a morph over a video.

Spelled as users type them: ``great_wave``; ``starry_night:0.7,great_wave:0.3`` (weights ≥ 0,
normalised to sum to 1); ``starry_night..great_wave`` (a morph: the first mix at the first frame,
the second at the last, either side may itself be a blend). Blends are convex combinations of the
styles' instance-norm (γ, β), as Dumoulin et al. 2017 blend them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from fastnst.core.errors import FastNSTError

StyleSpec = str | Mapping[str, float]


def style_weights(spec: StyleSpec | None, names: Sequence[str]) -> torch.Tensor:
    """Blend weights (S,) summing to 1 for ``names`` (the model's styles, in order); ``None``:
    the first style. Raises FastNSTError (param ``style``) for unknown names or bad weights."""
    if spec is None:
        spec = {names[0]: 1.0}
    if isinstance(spec, str):
        if ".." in spec:
            raise FastNSTError(f"{spec!r} is a morph (a..b); it applies to videos only", param="style")
        spec = _parse(spec)
    weights = torch.zeros(len(names))
    for name, value in spec.items():
        if name not in names:
            raise FastNSTError(f"unknown style {name!r}; this model has: {', '.join(names)}", param="style")
        if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise FastNSTError(f"the weight of style {name!r} must be a finite number >= 0, got {value!r}",
                               param="style")
        weights[names.index(name)] += float(value)
    if weights.sum() <= 0:
        raise FastNSTError("style weights must not all be zero", param="style")
    return weights / weights.sum()


def _parse(text: str) -> dict[str, float]:
    """``a`` or ``a:0.7,b:0.3`` -> {name: weight}."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition(":")
        name = name.strip()
        if not name:
            raise FastNSTError(f"cannot read style {text!r}: expected NAME or NAME:WEIGHT,NAME:WEIGHT",
                               param="style")
        try:
            weight = float(value) if sep else 1.0
        except ValueError:
            raise FastNSTError(f"cannot read the weight {value.strip()!r} of style {name!r} (a number like 0.3)",
                               param="style") from None
        mix[name] = mix.get(name, 0.0) + weight
    return mix


@dataclass(frozen=True)
class Morph:
    """Style weights moving linearly from ``start`` (first frame) to ``end`` (last frame)."""

    start: torch.Tensor
    end: torch.Tensor

    def at(self, t: float) -> torch.Tensor:
        """The weights at ``t`` in [0, 1] (clamped)."""
        t = min(1.0, max(0.0, t))
        return (1 - t) * self.start + t * self.end


def parse_style(spec: StyleSpec | None, names: Sequence[str]) -> torch.Tensor | Morph:
    """Weights (S,) for a style or blend, a ``Morph`` for ``a..b``."""
    if isinstance(spec, str) and ".." in spec:
        first, _, last = spec.partition("..")
        if ".." in last or not first.strip() or not last.strip():
            raise FastNSTError(f"cannot read morph {spec!r}: expected FROM..TO, e.g. starry_night..great_wave",
                               param="style")
        return Morph(style_weights(first, names), style_weights(last, names))
    return style_weights(spec, names)


def mix_label(weights: torch.Tensor, names: Sequence[str]) -> str:
    """A short name for output files: ``great_wave``, or ``starry_night70+great_wave30`` (percent)."""
    used = [(names[i], float(w)) for i, w in enumerate(weights.tolist()) if w > 0]
    if len(used) == 1:
        return used[0][0]
    return "+".join(f"{name}{round(100 * w)}" for name, w in used)
