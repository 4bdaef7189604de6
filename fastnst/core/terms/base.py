"""What a loss term is: its config keys (with defaults and checks), the VGG layers it reads, its style
targets and its forward. ``PerceptualLoss`` (fastnst/core/losses.py) is the sum of every term found in
this package; the config checks, model metadata, the painting fitter and ``fastnst info`` are derived
from the same set, so a new term is one new module (docs/extending.md)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from fastnst.core.errors import FastNSTError


@dataclass(frozen=True)
class Key:
    """One config key of a term, as spelled in ``conf/loss/*.yaml`` (``loss.<name>``) and in a model file's
    ``loss`` metadata. ``kind``: ``weight`` (a finite number >= 0), ``layers`` (VGG layer name -> weight),
    ``choice`` (one of ``choices``) or ``text``."""

    default: Any
    kind: str = "weight"
    choices: tuple[str, ...] = ()
    doc: str = ""

    def check(self, name: str, value: Any) -> Any:
        """``value`` as the term uses it, or FastNSTError naming ``name``: metadata from a file is untrusted."""
        if self.kind == "weight":
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
                raise FastNSTError(f"{name} must be a finite number >= 0, got {value!r}", param=name)
            return float(value)
        if self.kind == "layers":
            if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
                raise FastNSTError(f"{name} must map VGG layer names to weights, got {value!r}"[:200], param=name)
            return {k: Key(0.0).check(f"{name}.{k}", v) for k, v in value.items()}
        if self.kind == "text":
            if not isinstance(value, str):
                raise FastNSTError(f"{name} must be text, got {type(value).__name__}", param=name)
            return value
        if value not in self.choices:
            raise FastNSTError(f"{name} must be one of {', '.join(self.choices)}, got {value!r}", param=name)
        return value


@dataclass
class LossInputs:
    """What every term may read in one loss evaluation. ``output``/``content``: (N, 3, H, W) in [0, 1];
    ``features``: the output's VGG features at every layer some term asked for; ``targets``: the photo's
    content features; ``style_index`` (N,): each image's style (None: the first); ``network``: the
    stylizer, for terms that run it again; ``sample``: a training step (terms may judge a random subset)."""

    output: torch.Tensor
    content: torch.Tensor | None
    features: Mapping[str, torch.Tensor]
    targets: Mapping[str, torch.Tensor]
    style_index: torch.Tensor | None
    network: Callable[[torch.Tensor], torch.Tensor] | None
    sample: bool


class Term(nn.Module):
    """A loss term. Subclasses set ``name`` (its entry in the loss's result), ``keys`` (the first is its
    weight), ``order`` (where it sits in the sum and the logs) and override what they need."""

    name: ClassVar[str]
    keys: ClassVar[dict[str, Key]]
    order: ClassVar[int] = 100
    always_reported: ClassVar[bool] = False  # in the result even at weight 0 (content, style, tv)
    in_fits: ClassVar[bool] = True  # used when a painting is fitted to a trained network
    under_autocast: ClassVar[bool] = False  # computed in the run's precision (else in fp32)

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.options = {key: spec.check(key, options.get(key, spec.default)) for key, spec in self.keys.items()}

    @property
    def weight(self) -> float:
        return self.options[next(iter(self.keys))]

    @property
    def active(self) -> bool:
        return self.weight > 0

    @classmethod
    def summary(cls, spec: Mapping[str, Any]) -> str | None:
        """One phrase for ``fastnst info`` from a model's loss spec (None when the term is off)."""
        values = {k: spec.get(k, key.default) for k, key in cls.keys.items()}
        weight = next(iter(values.values()))
        if not weight and not cls.always_reported:
            return None
        text = f"{cls.name} {weight}"
        for i, (k, key) in enumerate(cls.keys.items()):
            if key.kind == "layers":
                text += f"×{list(values[k]) if isinstance(values[k], Mapping) else values[k]}"
            elif key.kind in ("choice", "text") or (i > 0 and values[k] != key.default):
                text += f" ({k} {values[k]})"  # a setting, or a number changed from its default
        return text

    def output_layers(self) -> list[str]:
        """VGG layers of the output this term reads (only asked of active terms)."""
        return []

    def content_layers(self) -> list[str]:
        """VGG layers of the photo this term compares against (computed once per photo)."""
        return []

    def style_layers(self) -> list[str]:
        """VGG layers of the paintings this term keeps targets of."""
        return []

    def set_style(self, styles: list[torch.Tensor], features: list[dict[str, torch.Tensor]]) -> None:
        """Compute what the term keeps of the paintings (non-persistent buffers); ``features[i]`` holds
        painting i's ``style_layers``."""

    @property
    def has_style(self) -> bool:
        return True

    def forward(self, inputs: LossInputs) -> dict[str, torch.Tensor]:
        """The weighted term under ``name``, and any parts of it (``name/<part>``)."""
        raise NotImplementedError


def fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in at least fp32 (bf16 and fp16 maps are summed in fp32; fp64 stays fp64 for gradient checks)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def style_targets(index: torch.Tensor | None, targets: torch.Tensor, n: int) -> torch.Tensor:
    """Row ``index[i]`` of per-style ``targets`` (S, ...) for each image; the first style broadcast (never
    copied) over ``n`` images when ``index`` is None."""
    return targets[:1].expand(n, *targets.shape[1:]) if index is None else targets[index]
