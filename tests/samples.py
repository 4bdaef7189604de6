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
