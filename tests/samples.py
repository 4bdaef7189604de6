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


def spread_network(styles: int = 1, residual: int = 1, spread: float = 0.6, seed: int = 1):
    """A seeded 8-channel TransformerNet whose (γ, β) are spread out (normal around 1 and 0 with sd
    ``spread``), so that it changes a picture visibly and its styles differ from each other."""
    import torch

    from fastnst.core.transformer import StyleInstanceNorm, TransformerNet

    torch.manual_seed(seed)
    net = TransformerNet(channels=8, num_residual=residual, num_styles=styles)
    for m in net.modules():
        if isinstance(m, StyleInstanceNorm):
            torch.nn.init.normal_(m.weight, 1.0, spread)
            torch.nn.init.normal_(m.bias, 0.0, spread)
    return net.eval()


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


def make_clip(path: Path, size: tuple[int, int] = (64, 48), frames: int = 12, fps: int = 10,
              audio: bool = False, vfr: bool = False, rotation: int = 0, codec: str = "libx264") -> Path:
    """A moving gradient; ``vfr`` spaces frames irregularly; audio is a 440 Hz AAC tone."""
    from fractions import Fraction

    import av

    w, h = size
    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=fps)
        v.width, v.height = w, h
        v.pix_fmt = "yuv444p" if (w % 2 or h % 2) else "yuv420p"
        v.time_base = Fraction(1, 1000)
        if rotation:
            v.set_display_rotation(rotation)
        a = None
        if audio:
            a = out.add_stream("aac", rate=44100)
            a.layout = "mono"
        t_ms = 0
        for i in range(frames):
            yy, xx = np.mgrid[0:h, 0:w]
            rgb = np.stack([(xx + 3 * i) % w * 255 // w, yy * 255 // h, np.full_like(xx, 40 * i % 255)], -1)
            frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = t_ms, Fraction(1, 1000)
            t_ms += (50 if i % 2 else 150) if vfr else 1000 // fps
            for p in v.encode(frame):
                out.mux(p)
        for p in v.encode(None):
            out.mux(p)
        if a is not None:
            samples = 44100 * frames // fps
            tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 44100)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = tone[None, start:start + 1024]
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
                af.sample_rate, af.pts = 44100, start
                for p in a.encode(af):
                    out.mux(p)
            for p in a.encode(None):
                out.mux(p)
    return path


FAST_FIT = ["--vgg-weights", "random", "--device", "cpu"]  # a fit in a second: the seeded random VGG, the CPU


def add_style(*args: object) -> int:
    """``fastnst add-style ARGS`` in-process; its exit code."""
    from fastnst.cli.main import main

    return main(["add-style", *map(str, args)])
