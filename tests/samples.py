"""Generated test pictures, importable from any test folder (tests/app/browser too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_image(path: Path, size: tuple[int, int] = (48, 40), seed: int = 0, mode: str = "RGB") -> Path:
    """A deterministic picture with smooth gradients and a few blocks, saved by extension."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx / max(w - 1, 1), yy / max(h - 1, 1), 0.5 + 0.5 * np.sin(xx / 5 + seed)], -1)
    for _ in range(3):
        x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
        arr[y0:y0 + h // 3, x0:x0 + w // 3] = rng.random(3)
    img = Image.fromarray((arr * 255).astype(np.uint8), "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def tiny_model(path: Path, name: str = "toy", residual: int = 1, seed: int = 1, **meta: object) -> Path:
    """A seeded 8-channel stylizer saved as a model file (``meta``: more ModelMeta fields): the model
    every test that needs "a model file" shares, milliseconds to build and to run."""
    import torch

    from fastnst.core.modelfile import ModelMeta, save_stylizer
    from fastnst.core.transformer import TransformerNet

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_stylizer(TransformerNet(channels=8, num_residual=residual), path, ModelMeta(style_name=name, **meta))


TINY_LOSS = {"vgg": "vgg16", "vgg_weights": "random", "content_layers": {"relu2_2": 1.0},
        "style_layers": {"relu1_2": 1.0, "relu2_2": 1.0}, "content_weight": 1.0, "style_weight": 2.0,
        "tv_weight": 1.0, "palette_weight": 50.0, "style_norm": "target", "content_norm": "target"}


def tiny_base(path: Path, styles: tuple[str, ...] = ("ink", "fire")) -> Path:
    """A tiny trained-looking base to fit new styles on: multi-style (or one style), with the loss it was
    trained with in its metadata (a seeded random VGG)."""
    import torch

    from fastnst.core.modelfile import ModelMeta, save_stylizer
    from fastnst.core.transformer import TransformerNet

    torch.manual_seed(3)
    net = TransformerNet(channels=8, num_residual=1, num_styles=len(styles))
    meta = ModelMeta(style_name="base", styles=list(styles) if len(styles) > 1 else [], loss=TINY_LOSS, steps=10,
                     style_images=[f"builtin:{s}" for s in styles] if len(styles) > 1 else [])
    if len(styles) == 1:
        meta = ModelMeta(style_name=styles[0], loss=TINY_LOSS, steps=10)
    return save_stylizer(net, path, meta)
