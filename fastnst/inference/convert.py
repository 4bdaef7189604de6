"""Models people already have: pytorch/examples ``fast_neural_style`` saved models (``.pth``/``.model``)
into fastnst stylizers.

Their network is fastnst's ``johnson`` with other key names (``conv1.conv2d.weight``,
``res1.conv1.conv2d.weight``, ``deconv1.conv2d.weight``, ...), working in 0-255 units on input and
output; old files also carry stale ``running_mean``/``running_var`` keys from a PyTorch version whose
InstanceNorm tracked them (unused in eval: they are dropped). The units are folded into the weights,
exactly, since convolution and reflection padding are linear: the first convolution's weight x255
(the input arrives in [0, 1]), the last convolution's weight and bias /255, output left unbounded
(``output="raw"``; stylizing clamps it). The file is read with ``weights_only=True``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from fastnst.core.errors import FastNSTError
from fastnst.core.modelfile import ModelMeta, save_stylizer
from fastnst.core.transformer import TransformerNet

_RENAMES = [  # their key pattern -> ours (TransformerNet)
    (r"^res(\d)\.(conv\d)\.conv2d\.", lambda m: f"res.{int(m[1]) - 1}.{m[2]}.conv."),
    (r"^res(\d)\.(in\d)\.", lambda m: f"res.{int(m[1]) - 1}.{m[2]}."),
    (r"^(deconv[12])\.conv2d\.", lambda m: f"{m[1]}.conv.conv."),
    (r"^(conv\d|deconv3)\.conv2d\.", lambda m: f"{m[1]}.conv."),
]


def their_key_to_ours(key: str) -> str:
    for pattern, replace in _RENAMES:
        new, n = re.subn(pattern, replace, key)
        if n:
            return new
    return key


def from_pytorch_examples(state: dict[str, torch.Tensor]) -> TransformerNet:
    """A pytorch/examples TransformerNet state dict -> an equivalent fastnst network in [0, 1] units."""
    state = {k: v for k, v in state.items() if not k.endswith(("running_mean", "running_var"))}
    ours = {their_key_to_ours(k): v.float() for k, v in state.items()}
    network = TransformerNet(channels=32, num_residual=5, output="raw")
    missing = set(network.state_dict()) - set(ours)
    unknown = set(ours) - set(network.state_dict())
    if missing or unknown:
        raise FastNSTError(f"not a pytorch/examples fast_neural_style model ({len(missing)} weights missing, "
                           f"{len(unknown)} unknown, e.g. {sorted(missing or unknown)[0]})")
    ours["conv1.conv.weight"] = ours["conv1.conv.weight"] * 255
    ours["deconv3.conv.weight"] = ours["deconv3.conv.weight"] / 255
    ours["deconv3.conv.bias"] = ours["deconv3.conv.bias"] / 255
    try:
        network.load_state_dict(ours, strict=True)
    except RuntimeError:
        raise FastNSTError("not a pytorch/examples fast_neural_style model (weight shapes differ)") from None
    return network.eval()


def convert(source: Path, output: Path | None = None, style_name: str | None = None) -> Path:
    """Convert a pytorch/examples ``.pth``/``.model`` file into a fastnst ``.safetensors`` stylizer."""
    if not source.is_file():
        raise FastNSTError(f"no such file: {source}")
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling or format failure means "not such a model"
        raise FastNSTError(f"{source} is not a loadable PyTorch weights file "
                           f"({str(err).splitlines()[0][:100]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FastNSTError(f"{source} does not hold a state dict")
    network = from_pytorch_examples(state)
    name = style_name or re.sub(r"[^\w.+-]", "_", source.stem)[:64] or "converted"
    meta = ModelMeta(style_name=name, description=f"converted from pytorch/examples fast_neural_style: {source.name}")
    return save_stylizer(network, output or source.with_suffix(".safetensors"), meta)
