"""Stylizer files: one ``.safetensors`` holding the network weights plus JSON metadata
(architecture, style, loss settings, steps, version). Reading one never executes code from it;
Lightning ``.ckpt`` files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from fastnst import __version__
from fastnst.core.errors import FastNSTError
from fastnst.core.images import atomic_path
from fastnst.core.transformer import TransformerNet

FORMAT = "fastnst.stylizer"
FORMAT_VERSION = 1


def save_stylizer(network: TransformerNet, path: Path | str, metadata: dict[str, Any]) -> Path:
    """Write weights and metadata atomically. Metadata values must be JSON-serialisable."""
    path = Path(path)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "architecture": "TransformerNet",
            "network": network.config, "fastnst_version": __version__, **metadata}
    from safetensors.torch import save_file

    tensors = {k: v.detach().float().contiguous().cpu() for k, v in network.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={k: json.dumps(v) for k, v in meta.items()})
    return path


def read_metadata(path: Path | str) -> dict[str, Any]:
    """The metadata of a stylizer file (``.safetensors`` or ``.ckpt``)."""
    return _read(Path(path))[1]


def load_network(path: Path | str) -> tuple[TransformerNet, dict[str, Any]]:
    """Rebuild the network a file describes, on the CPU, in eval mode. Raises FastNSTError for a
    missing, corrupt or foreign file, or weights that do not fit the declared architecture."""
    path = Path(path)
    state, meta = _read(path)
    try:
        network = TransformerNet(**meta["network"])
        network.load_state_dict(state, strict=True)
    except (TypeError, KeyError, RuntimeError):
        raise FastNSTError(f"{path}: weights do not match a TransformerNet{meta.get('network', '')}") from None
    return network.eval(), meta


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not path.is_file():
        raise FastNSTError(f"model file not found: {path}")
    if path.suffix == ".ckpt":
        return _read_checkpoint(path)
    from safetensors import SafetensorError, safe_open  # here, so benchmarks run without it

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        meta = {k: json.loads(v) for k, v in raw.items()}
    except (SafetensorError, OSError, ValueError) as err:
        raise FastNSTError(f"{path} is not a readable .safetensors model ({err})") from None
    if meta.get("format") != FORMAT:
        raise FastNSTError(f"{path} is a .safetensors file but not a fastnst stylizer")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise FastNSTError(f"{path} was written by a newer fastnst ({meta.get('fastnst_version')}); upgrade")
    return state, meta


def _read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle.UnpicklingError for anything outside the allow-list
        raise FastNSTError(f"{path} is not a loadable checkpoint; only plain tensors and values are "
                           f"accepted ({str(err).splitlines()[0][:120]})") from None
    hparams = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    if "network" not in hparams or "state_dict" not in ckpt:
        raise FastNSTError(f"{path} is not a fastnst training checkpoint")
    state = {k.removeprefix("network."): v for k, v in ckpt["state_dict"].items() if k.startswith("network.")}
    meta = {"format": FORMAT, **hparams, "steps": ckpt.get("global_step")}
    return state, meta
