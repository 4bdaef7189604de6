"""Style reconstruction with Gram matrices (Gatys et al. 2016; Johnson et al. 2016, eq. 3 and 4)."""

from __future__ import annotations

import torch

from fastnst.core.kernels import self_product
from fastnst.core.terms.base import Key, LossInputs, Term, fp32


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C), ``G = F Fᵀ / (C·H·W)``, in fp32. bf16 features (mixed precision) are
    multiplied in bf16, which the matrix units accumulate in fp32 (an error of 2⁻⁸, far below a run's style
    errors); others in fp32 (fp16 sums could overflow)."""
    n, c, h, w = features.shape
    if features.dtype == torch.bfloat16:
        return self_product(features).float() / (c * h * w)
    with torch.autocast(device_type=features.device.type, enabled=False):
        return self_product(fp32(features)) / (c * h * w)


class GramStyle(Term):
    """``style_weight · Σ_l w_l ‖G_l(ŷ) − G_l(s)‖² / n_l``, the mean over the Gram's entries.

    ``style_norm``: ``none`` (n_l = 1, Johnson et al.) or ``target`` (n_l = mean G_l(s)², a relative error).
    A VGG's Gram magnitudes span orders of magnitude from relu1_2 to relu4_3, so with ``none`` the
    shallowest layer decides the style alone; ``target`` lets every layer count as its weight says.
    The paintings' Grams are computed once (``set_style``), as non-persistent buffers."""

    name = "style"
    order = 20
    always_reported = True
    keys = {"style_weight": Key(1e5),
            "style_layers": Key({"relu1_2": 1.0, "relu2_2": 1.0, "relu3_3": 1.0, "relu4_3": 1.0}, "layers"),
            "style_norm": Key("none", "choice", ("none", "target"))}

    def output_layers(self) -> list[str]:
        return list(self.options["style_layers"])

    def style_layers(self) -> list[str]:
        return list(self.options["style_layers"])

    def set_style(self, styles: list[torch.Tensor], features: list[dict[str, torch.Tensor]]) -> None:
        for name in self.options["style_layers"]:
            gram = torch.cat([gram_matrix(f[name]) for f in features])
            norm = gram.pow(2).mean(dim=(1, 2)).clamp_min(1e-30) if self.options["style_norm"] == "target" \
                else torch.ones(len(styles))
            self.register_buffer(f"gram_{name}", gram, persistent=False)
            self.register_buffer(f"gram_norm_{name}", norm.to(gram), persistent=False)

    @property
    def has_style(self) -> bool:
        return all(hasattr(self, f"gram_{name}") for name in self.options["style_layers"])

    def gram(self, name: str) -> torch.Tensor:
        """Layer ``name``'s target Grams, (S, C, C)."""
        try:
            return getattr(self, f"gram_{name}")
        except AttributeError:
            raise RuntimeError("PerceptualLoss.set_style must be called before computing the loss") from None

    def forward(self, inputs: LossInputs) -> dict[str, torch.Tensor]:
        parts = {}
        for name, w in self.options["style_layers"].items():
            g = gram_matrix(inputs.features[name])
            target, norm = self.gram(name), getattr(self, f"gram_norm_{name}")
            if inputs.style_index is None:  # one style: its Gram broadcast over the batch, never copied
                err = (g - target[:1]).pow(2).mean() / norm[0]
            else:
                i = inputs.style_index
                err = ((g - target[i]).pow(2).mean(dim=(1, 2)) / norm[i]).mean()
            parts[f"style/{name}"] = self.weight * w * err
        total = sum(parts.values()) if parts else fp32(inputs.output.new_zeros(()))
        return {**parts, self.name: total}
