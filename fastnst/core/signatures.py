"""Style signatures: a few thousand numbers per style that say what its painting looks like to the loss
network, kept in a multi-style model file so that fitting a new painting can start from the known styles
most like it without their paintings (a base trained on 28 paintings ships none of the 20 it borrowed).

A signature is each style layer's per-channel mean and standard deviation of the VGG features (the
statistics AdaIN transfers, Huang & Belongie 2017): 2,048 numbers for the starters' five layers, where the
Grams would be 350,000. Two paintings are compared by the relative squared difference of their
signatures, layer by layer, weighted as the loss weights its style layers.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from fastnst.core.vgg import VGGFeatures, channels


@torch.no_grad()
def signature(vgg: VGGFeatures, painting: torch.Tensor, layers: Mapping[str, float]) -> torch.Tensor:
    """(D,) float32: the painting's (1, 3, H, W) in [0, 1] channel means then channel stds at each of
    ``layers`` in order (D = 2 x the channels of all of them)."""
    features = vgg(painting, list(layers))
    parts = []
    for name in layers:
        f = features[name].float().flatten(2)[0]  # (C, H*W)
        parts += [f.mean(dim=1), f.std(dim=1)]
    return torch.cat(parts)


def width(layers: Mapping[str, float]) -> int:
    """How many numbers a signature over ``layers`` holds."""
    return sum(2 * channels(name) for name in layers)


def distances(known: torch.Tensor, new: torch.Tensor, layers: Mapping[str, float]) -> torch.Tensor:
    """(S,): how far each of ``known`` (S, D) is from ``new`` (D,): per layer, the squared difference over the
    new painting's squared signature, times the layer's weight; summed. 0 for the same painting."""
    if known.shape[1] != width(layers) or new.shape[0] != width(layers):
        raise ValueError(f"signatures of {known.shape[1]} and {new.shape[0]} numbers for layers that make "
                         f"{width(layers)}")
    total = torch.zeros(known.shape[0])
    start = 0
    for name, weight in layers.items():
        end = start + 2 * channels(name)
        a, b = known[:, start:end].float(), new[start:end].float()
        total += weight * (a - b).pow(2).sum(dim=1) / b.pow(2).sum().clamp_min(1e-12)
        start = end
    return total
