"""How much does a model flicker on video?

    python -m scripts.quality.flicker --model m.safetensors clip.mp4 [--max-size 256] [--max-frames 120]

Prints (a) the warping error on synthetic clips with known affine motion, made from frames of
the clip used as stills, and (b) the flicker ratio on the real clip (see fastnst/flicker.py).
Importable: ``from fastnst.core.images import fit_long_side
from fastnst.core.temporal import warping_error, flicker_ratio, synthetic_clip``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import torch

from fastnst.core.errors import FastNSTError
from fastnst.core.images import fit_long_side
from fastnst.core.temporal import flicker_ratio, synthetic_clip, warping_error
from fastnst.inference.stylizer import Stylizer


def frames(path: Path, max_size: int, limit: int) -> Iterator[torch.Tensor]:
    """Decoded frames as (3, H, W) in [0, 1], long side at most ``max_size``."""
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        raise FastNSTError(f"{path} is not a readable video ({err.__class__.__name__})") from None
    with container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= limit:
                return
            x = torch.from_numpy(np.ascontiguousarray(frame.to_ndarray(format="rgb24"))).permute(2, 0, 1)[None]
            yield fit_long_side(x.float() / 255, max_size, upscale=False)[0]


def measure(stylizer: Stylizer, clip: Path, max_size: int = 256, max_frames: int = 120,
            stills: int = 4) -> dict[str, float]:
    stylize = lambda x: stylizer.stylize_tensor(x)  # noqa: E731
    real = list(frames(clip, max_size, max_frames))
    if not real:
        raise FastNSTError(f"{clip}: no frames")
    picks = real[:: max(1, len(real) // stills)][:stills]
    errors = [warping_error(stylize, *synthetic_clip(still[None], frames=8, seed=i)) for i, still in enumerate(picks)]
    ratio = flicker_ratio((f, stylize(f[None])[0]) for f in real)
    return {"warping_error": float(np.mean(errors)), "flicker_ratio": ratio, "frames": len(real)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--max-size", type=int, default=256)
    parser.add_argument("--max-frames", type=int, default=120)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    try:
        result = measure(Stylizer.from_file(args.model, args.device), args.clip, args.max_size, args.max_frames)
    except FastNSTError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"warping error (synthetic motion): {result['warping_error']:.6f}")
    print(f"flicker ratio (real clip, {result['frames']} frames): {result['flicker_ratio']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
