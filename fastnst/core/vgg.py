"""The loss network: a truncated VGG with named feature taps (Simonyan & Zisserman 2015).

Images come in as float RGB in [0, 1]; ImageNet normalisation happens here, nowhere else.
"""

from __future__ import annotations

import urllib.error
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from torchvision import models

from fastnst.core.errors import FastNSTError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Convolutions per block in torchvision's `features` Sequential.
_BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}


def layer_names(arch: str) -> list[str]:
    """Names of every module in torchvision's ``features``: conv1_1, relu1_1, ..., pool5."""
    names = []
    for block, convs in enumerate(_BLOCKS[arch], start=1):
        for i in range(1, convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


def channels(name: str) -> int:
    """How many channels layer ``name`` (e.g. ``relu3_3``) has in either VGG: 64 in block 1, doubling to 512."""
    block = int(name.removeprefix("conv").removeprefix("relu").removeprefix("pool")[0])
    return min(64 * 2 ** (block - 1), 512)


def _build(arch: str, weights: str, seed: int) -> nn.Sequential:
    if arch not in _BLOCKS:
        raise FastNSTError(f"unknown VGG architecture {arch!r}; choose vgg16 or vgg19")
    factory = getattr(models, arch)
    if weights == "imagenet":
        enum = getattr(models, f"{arch.upper()}_Weights").IMAGENET1K_V1
        try:
            return factory(weights=enum).features
        except (urllib.error.URLError, OSError, RuntimeError) as err:
            raise FastNSTError(
                f"could not load the ImageNet {arch} weights ({err.__class__.__name__}); "
                f"offline, pass the path of a local torchvision {arch} state dict as the VGG weights",
                param="vgg_weights") from None
    if weights == "random":
        # Seeded so tests and smoke runs are reproducible; these features are NOT perceptual.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return factory(weights=None).features
    return _load_local(factory(weights=None), Path(weights).expanduser(), arch)


def _load_local(model: nn.Module, path: Path, arch: str) -> nn.Sequential:
    if not path.is_file():
        raise FastNSTError(f"VGG weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any parse failure means "not a weights file"
        raise FastNSTError(f"{path} is not a readable weights file ({err.__class__.__name__})") from None
    if not isinstance(state, dict):
        raise FastNSTError(f"{path} does not hold a state dict")
    # Accept a full torchvision state dict or just the `features` part.
    features = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
    try:
        model.features.load_state_dict(features, strict=True)
    except RuntimeError:
        raise FastNSTError(f"{path} does not hold torchvision {arch} weights (keys or shapes differ)") from None
    return model.features


class VGGFeatures(nn.Module):
    """A frozen VGG truncated after the deepest requested layer.

    ``forward(x, layers)`` returns ``{name: activation}`` for the requested names and stops
    at the deepest of them, so a content-only pass never runs the deep blocks.
    """

    def __init__(self, arch: str = "vgg16", layers: Iterable[str] = ("relu4_3",),
                 weights: str = "imagenet", seed: int = 0) -> None:
        super().__init__()
        names = layer_names(arch) if arch in _BLOCKS else []
        layers = list(layers)
        unknown = [n for n in layers if n not in names]
        if not names or unknown:
            raise FastNSTError(f"unknown {arch} layer(s) {unknown}; expected names like relu2_2")
        depth = max(names.index(n) for n in layers) + 1
        features = _build(arch, weights, seed)[:depth]
        for i, module in enumerate(features):
            if isinstance(module, nn.ReLU):
                features[i] = nn.ReLU(inplace=False)  # taps must not be overwritten by the next layer
        self.features = features.eval().requires_grad_(False)
        self.names = names[:depth]
        self.arch, self.weights = arch, weights
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGFeatures:
        # The loss network never trains (no dropout or BN here, but keep it explicit).
        return super().train(False)

    def forward(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """x: (N, 3, H, W) RGB in [0, 1]. Returns the activations of ``layers``."""
        wanted = set(layers)
        last = max(self.names.index(n) for n in wanted)
        out: dict[str, torch.Tensor] = {}
        h = (x - self.mean) / self.std
        if h.device.type == "cpu":
            # oneDNN's CPU convolutions work in channels-last (or blocked) layouts: NCHW maps would be reordered
            # into them and back around every layer (docs/speed.md has what that cost).
            h = h.contiguous(memory_format=torch.channels_last)
        for name, module in zip(self.names[: last + 1], self.features, strict=False):
            h = module(h)
            if name in wanted:
                out[name] = h
        return out
