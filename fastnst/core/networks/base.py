"""What every stylizing network is (``StyleNetwork``) and the norm layer they share (``StyleInstanceNorm``):
the interface the model file, tiling, the engines, export, the painting fitter and the app rely on, so
that they never name an architecture. Networks register by subclassing (fastnst/core/networks/__init__.py)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

UPSAMPLING = ("nearest", "bilinear")
WEIGHTLESS = ("upsample",)  # network settings that change no weight: a run may go on with them changed


def weight_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without the settings that hold no weight: two networks with equal ones share weights."""
    return {k: v for k, v in config.items() if k not in WEIGHTLESS}


def upsample_mode(mode: str) -> str:
    """``mode`` if it is one of ``UPSAMPLING``; a ValueError naming the choices otherwise."""
    if mode not in UPSAMPLING:
        raise ValueError(f"upsample must be one of {UPSAMPLING}, got {mode!r}")
    return mode


def upsample(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """``x`` resized to ``size`` for a resize-convolution. ``nearest`` (a file that names no ``upsample``) copies each
    pixel into a 2x2 block, and the convolution after it sees the block's four phases differently: a young
    network learns to paint with that, a fine diagonal hatching locked to its 4-pixel grid (docs/quality.md,
    "The hatching's cause"). ``bilinear`` gives every phase the same smooth input."""
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class StyleInstanceNorm(nn.Module):
    """Instance norm with a learned affine map per style.

    One style: ``weight``/``bias`` of shape (C,), exactly ``nn.InstanceNorm2d(C, affine=True)`` (same
    state-dict keys, so single-style files of every version load). ``num_styles`` S > 1: shape (S, C),
    and ``forward`` takes per-image style weights (N, S) that mix the rows.
    ``fixed_stats``: (mean, var) of shape (C,) to normalise with instead of each image's own, set while
    tiling so that every tile is normalised as the whole image would be (``inference/tiling.py``).
    """

    def __init__(self, channels: int, num_styles: int = 1, eps: float = 1e-5) -> None:
        super().__init__()
        shape = (channels,) if num_styles == 1 else (num_styles, channels)
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))
        self.eps = eps
        self.fixed_stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        gamma, beta = self._affine(style)
        if self.fixed_stats is not None:
            mean, var = self.fixed_stats
            y = F.batch_norm(x, mean.to(x.dtype), var.to(x.dtype), training=False, eps=self.eps)
            return y * gamma.to(y.dtype)[..., None, None] + beta.to(y.dtype)[..., None, None]
        if gamma.dim() == 1:
            return F.instance_norm(x, weight=gamma, bias=beta, eps=self.eps)
        # Each image its own (γ, β): the batch folded into one image of N·C channels, so the per-image
        # affine runs inside the fused kernel (as a separate multiply-add it cost 10-30% of a forward pass).
        n, c = x.shape[:2]
        y = F.instance_norm(x.reshape(1, n * c, *x.shape[2:]), weight=gamma.reshape(-1).to(x.dtype),
                            bias=beta.reshape(-1).to(x.dtype), eps=self.eps)
        return y.reshape(x.shape)

    def _affine(self, style: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(γ, β): shape (C,) for one style, (N, C) mixed from the style weights (N, S) otherwise."""
        if self.weight.dim() == 1:
            return self.weight, self.bias
        if style is None:
            raise ValueError("a multi-style network needs style weights of shape (N, num_styles)")
        return style.to(self.weight.dtype) @ self.weight, style.to(self.bias.dtype) @ self.bias


class StyleNetwork(nn.Module):
    """A feed-forward stylizer: ``forward(x, style=None)`` maps (N, 3, H, W) in [0, 1] to the same shape,
    ``style`` being blend weights (S,) or (N, S) for a multi-style network (default: the first style).

    A subclass sets ``arch`` (the name model files record), ``limits`` (the range of each whole-number
    constructor argument, checked before a file's network is built) and ``choices`` (the allowed values of
    each text argument), takes ``num_styles`` in its constructor, returns its constructor arguments from
    ``config`` (``num_styles`` only when > 1) and normalises with ``StyleInstanceNorm`` layers, whose (γ, β)
    rows are the styles. ``downsampling``: how much its strided layers shrink a map (tiles start on that grid).
    """

    arch: ClassVar[str]
    limits: ClassVar[dict[str, tuple[int, int]]] = {}
    choices: ClassVar[dict[str, tuple[str, ...]]] = {}
    downsampling: ClassVar[int] = 1
    num_styles: int
    upsample: str = "nearest"  # networks.base.upsample's mode, for networks that upsample

    @property
    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> None:
        """Raise ValueError unless ``config`` holds only known arguments within their limits (untrusted:
        it comes from a file). ``num_styles`` is every network's."""
        limits = {**cls.limits, "num_styles": (1, 1024)}
        unknown = sorted(set(config) - set(limits) - set(cls.choices))
        if unknown:
            raise ValueError(f"unknown network settings {unknown}")
        for key, (low, high) in limits.items():
            value = config.get(key)
            whole = isinstance(value, int) and not isinstance(value, bool)
            if value is not None and not (whole and low <= value <= high):
                raise ValueError(f"network {key} must be a whole number from {low} to {high}, got {value!r}")
        for key, allowed in cls.choices.items():
            if key in config and config[key] not in allowed:
                raise ValueError(f"network {key} must be one of {allowed}, got {config[key]!r}")

    def _recorded(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` (the architecture's own arguments) with the shared ones a file records only when they
        differ from what older files mean: ``upsample`` unless nearest, ``num_styles`` unless 1."""
        if self.upsample != "nearest":
            config = {**config, "upsample": self.upsample}
        return config if self.num_styles == 1 else {**config, "num_styles": self.num_styles}

    def norm_layers(self) -> list[StyleInstanceNorm]:
        """Every norm layer, in the order the forward pass reaches them (tiling imposes statistics in it)."""
        return [m for m in self.modules() if isinstance(m, StyleInstanceNorm)]

    def style_weights(self, style: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
        """(N, S) blend weights for a multi-style network, None for a single-style one."""
        if self.num_styles == 1:
            return None
        if style is None:
            style = F.one_hot(torch.zeros((), dtype=torch.long, device=x.device), self.num_styles)
        if style.shape[-1] != self.num_styles or style.dim() > 2:
            raise ValueError(f"style weights must have shape (N, {self.num_styles}) or ({self.num_styles},), "
                             f"got {tuple(style.shape)}")
        return style.to(x.device, torch.float32).expand(x.shape[0], -1)

    def with_new_style(self) -> StyleNetwork:
        """A copy with one more style, for teaching a trained network a new style: the shared weights
        and the existing styles' (γ, β) are copied; the new row starts at their mean (for a
        single-style network: at its one style), a stylization to fine-tune from, not from noise."""
        grown = type(self)(**{**self.config, "num_styles": self.num_styles + 1})
        state = {}
        for key, value in self.state_dict().items():
            target = grown.state_dict()[key]
            if target.shape != value.shape:  # a norm's weight/bias: (C,) or (S, C) -> (S + 1, C)
                rows = value.reshape(-1, value.shape[-1])
                value = torch.cat([rows, rows.mean(dim=0, keepdim=True)])
            state[key] = value.detach().clone()
        grown.load_state_dict(state)
        return grown

    def train_only_styles(self, indices: list[int]) -> None:
        """Freeze everything except the (γ, β) rows of styles ``indices``: a new style taught to a
        trained network by its norm parameters alone, the shared convolutions kept (Dumoulin et al.
        2017). The other rows get zero gradients (an optimizer with weight decay would still move them)."""
        if self.num_styles == 1:
            raise ValueError("train_only_styles needs a multi-style network (see with_new_style)")
        mask = torch.zeros(self.num_styles, 1)
        mask[indices] = 1.0
        for module in self.modules():
            for p in module.parameters(recurse=False):
                p.requires_grad_(isinstance(module, StyleInstanceNorm))
            if isinstance(module, StyleInstanceNorm):
                for p in (module.weight, module.bias):
                    p.register_hook(lambda grad: grad * mask.to(grad))
