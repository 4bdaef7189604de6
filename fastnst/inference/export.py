"""Export a stylizer for runtimes without fastnst: ONNX (dynamic batch, height and width) or
TorchScript. Both take and return (N, 3, H, W) RGB float in [0, 1] (outputs unclamped), H, W >= 5.
A multi-style model takes a second input, ``style``: blend weights of shape (S,) in the order of
its styles (summing to 1), so a runtime can pick or blend styles."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from fastnst.core.errors import FastNSTError
from fastnst.core.images import atomic_path
from fastnst.core.modelfile import is_starter, load_network, resolve_model

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}


def export(model: Path | str, fmt: str, output: Path | None = None, opset: int = 17) -> Path:
    """Write ``model`` (a file or a starter's name) in ``fmt`` to ``output`` and return the path.
    Default: beside the model file; for a starter model, in the current folder."""
    if fmt not in FORMATS:
        raise FastNSTError(f"unknown export format {fmt!r}; choose {', '.join(FORMATS)}", param="format")
    path = resolve_model(model)
    network, meta = load_network(path)
    output = output or (Path(path.name) if is_starter(path) else path).with_suffix(FORMATS[fmt])
    example: tuple[torch.Tensor, ...] = (torch.rand(1, 3, 64, 64),)
    names = ["image"]
    if network.num_styles > 1:
        example = (*example, torch.full((network.num_styles,), 1 / network.num_styles))
        names.append("style")
    with warnings.catch_warnings(), atomic_path(output) as tmp:
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
        if fmt == "onnx":
            axes = {0: "batch", 2: "height", 3: "width"}
            # The TorchScript-based exporter handles the size-dependent resize with dynamic axes.
            torch.onnx.export(network, example, str(tmp), input_names=names, output_names=["stylized"],
                              dynamic_axes={"image": axes, "stylized": axes}, opset_version=opset, dynamo=False)
        else:
            with torch.inference_mode(False), torch.no_grad():
                torch.jit.save(torch.jit.trace(network, example), str(tmp),
                               _extra_files={"styles.json": json.dumps(meta.style_names)})
    return output
