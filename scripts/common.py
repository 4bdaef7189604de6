"""What the scripts share: timing (synchronised, after warm-up, median of repeats) and the loss a
model was trained with, rebuilt from its file. Scripts import it as a sibling module."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from fastnst.core.losses import PerceptualLoss
from fastnst.core.modelfile import ModelMeta
from fastnst.core.styles import load_style


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], object], device: torch.device, warmup: int = 1, repeats: int = 5) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def model_loss(meta: ModelMeta, style_image: str | Path | None = None, **changes: object) -> PerceptualLoss:
    """The loss a model was trained with (same VGG, layers and weights; no temporal term), its style
    set from ``style_image`` or the image the file names. ``changes`` override spec values
    (e.g. ``vgg_weights=PATH`` to judge a model on another VGG)."""
    loss = PerceptualLoss.from_spec(**{**meta.loss, "temporal_weight": 0.0, **changes})
    loss.set_style(model_style(meta, style_image))
    return loss


def model_style(meta: ModelMeta, style_image: str | Path | None = None) -> torch.Tensor:
    """The style image as the model was trained on it (its style size): ``style_image`` or the file's own."""
    return load_style(str(style_image or meta.style_image), meta.style_size or 512)[0]
