"""Does the temporal loss make a stable network, and what does it cost in style and sharpness?

    # fine-tune a starter under its own loss, one run per weight (0 = the same steps without the term):
    python -m scripts.quality.temporal_experiment --style great_wave \
        --start-from fastnst/assets/models/great_wave.safetensors --data ../shared/assets/train \
        --held-out ../shared/assets/content --clip ../shared/assets/video/fox.mp4 \
        --steps 300 --weights 30,300 --cpu -- loss.vgg_weights=../shared/assets/vgg/vgg16_imagenet.safetensors
    # or train from scratch on any painting:
    python -m scripts.quality.temporal_experiment --style-image painting.jpg --data ... --held-out ... --steps 1000

Trains one network with ``loss.temporal_weight=0`` and one for each of ``--weights`` (same style,
data, seed and step count, and the same start with ``--start-from``: all its weights); then, on
held-out photos, prints the held-out loss under the run's own loss (no temporal term), the warping
error on synthetic-motion clips (fastnst.core.temporal) and, with ``--clip``, the real clip's warping
error along its optical flow and its flicker ratio (scripts/quality/flicker.py), each with its change
against weight 0. ``--strip`` writes the
middle crop of each run's result on a few photos, to judge by eye whether stability cost sharpness.
A run whose stylizer already exists in ``--out`` is reused. Arguments after ``--`` go to every run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch

from fastnst.core.images import find_images, fit_long_side, load_rgb, save_image, to_pil
from fastnst.core.modelfile import read_metadata
from fastnst.core.temporal import synthetic_clip, warping_error
from fastnst.inference.stylizer import Stylizer
from scripts.common import model_loss
from scripts.quality.flicker import Flows, measure, read_clip

ROOT = Path(__file__).resolve().parents[2]


def train(out: Path, weight: float, args: argparse.Namespace, extra: list[str]) -> Path:
    name = args.style or "temporal"
    existing = out / f"{name}.safetensors"
    if existing.is_file() and read_metadata(existing).steps == args.steps:
        return existing
    style = [f"style={args.style}"] if args.style else ["style=custom", f"style.image={args.style_image}",
                                                         f"style.name={name}"]
    start = [f"init_weights={args.start_from.resolve()}"] if args.start_from else []
    cmd = [sys.executable, "train.py", *style, *start, f"data.root={args.data}",
           f"data.image_size={args.image_size}", f"model={args.model}", f"trainer.max_steps={args.steps}",
           "trainer=cpu" if args.cpu else "trainer=default", f"loss.temporal_weight={weight}",
           f"hydra.run.dir={out}", "trainer.enable_progress_bar=false", f"trainer.val_check_interval={args.steps}",
           f"seed={args.seed}", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"training failed:\n{proc.stderr[-3000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def held_out(folder: Path, size: int) -> list[torch.Tensor]:
    return [fit_long_side(load_rgb(path), size) for path in find_images(folder)]


@torch.no_grad()
def evaluate(model: Path, photos: list[torch.Tensor], clip: tuple[list[torch.Tensor], Flows | None] | None
             ) -> dict[str, float]:
    meta = read_metadata(model)
    loss = model_loss(meta)
    stylize = Stylizer.from_file(model, device="cpu").stylize_tensor
    totals: dict[str, float] = {"total": 0.0, "content": 0.0, "style": 0.0, "warp": 0.0}
    for i, x in enumerate(photos):
        terms = loss(stylize(x), x)
        for key in ("total", "content", "style"):
            totals[key] += float(terms[key]) / len(photos)
        totals["warp"] += warping_error(stylize, *synthetic_clip(x, frames=6, seed=i)) / len(photos)
    if clip is not None:
        flicker = measure(stylize, *clip)
        totals["flicker"] = flicker["flicker_ratio"]
        if "flow_warping_error" in flicker:
            totals["flow"] = flicker["flow_warping_error"]
    return totals


def strip(models: dict[float, Path], photos: list[torch.Tensor], path: Path, crop: int = 192) -> None:
    """One row per weight, the middle ``crop`` px of each photo's result at 1:1."""
    rows = []
    for model in models.values():
        stylize = Stylizer.from_file(model, device="cpu").stylize_tensor
        cells = []
        for x in photos:
            y = stylize(x)
            top, left = (y.shape[-2] - crop) // 2, (y.shape[-1] - crop) // 2
            cells.append(y[..., top:top + crop, left:left + crop])
        rows.append(torch.cat(cells, -1))
    save_image(to_pil(torch.cat(rows, -2)), path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--style", help="a style of conf/style: its image and its loss weights")
    which.add_argument("--style-image", help="any painting, on the default loss")
    parser.add_argument("--start-from", type=Path, help="a trained model of this network and style: fine-tune it")
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--held-out", required=True, type=Path)
    parser.add_argument("--clip", type=Path, help="a real clip for the flicker ratio (256 px, 120 frames)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--weights", default="3,10", help="temporal weights to compare with 0")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--eval-size", type=int, default=192)
    parser.add_argument("--model", default="johnson_small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/temporal_experiment"))
    parser.add_argument("--strip", type=Path, help="write 1:1 crops of each run's results here (JPEG)")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even where a GPU exists")
    args, extra = parser.parse_known_args(argv)
    extra = [e for e in extra if e != "--"]
    photos = held_out(args.held_out, args.eval_size)
    clip = read_clip(args.clip) if args.clip else None
    models, results = {}, {}
    for weight in (0.0, *(float(w) for w in args.weights.split(","))):
        models[weight] = train(args.out.resolve() / f"w{weight:g}", weight, args, extra)
        results[weight] = evaluate(models[weight], photos, clip)
    base = results[0.0]
    keys = [k for k in ("total", "style", "warp", "flow", "flicker") if k in base]
    names = {"total": "held-out loss", "style": "style", "warp": "warping error (synthetic)",
             "flow": "warping error (clip, flow)", "flicker": "flicker ratio (clip)"}
    print("| temporal_weight | " + " | ".join(f"{names[k]} | change" for k in keys) + " |")
    print("|---" * (1 + 2 * len(keys)) + "|")
    for weight, r in results.items():
        cells = [f"{r[k]:.6f} | {100 * (r[k] / base[k] - 1):+.1f}%" if k in ("warp", "flow") else
                 f"{r[k]:.4f} | {100 * (r[k] / base[k] - 1):+.1f}%" for k in keys]
        print(f"| {weight:g} | " + " | ".join(cells) + " |")
    start = f", from {args.start_from}" if args.start_from else ""
    print(f"\n{args.steps} steps{start}, {args.model}, {args.image_size} px crops, seed {args.seed}; "
          f"evaluated on {len(photos)} held-out photos at {args.eval_size} px")
    if args.strip:
        strip(models, held_out(args.held_out, 384)[:3], args.strip)
        print(f"strip (rows: weights {', '.join(f'{w:g}' for w in models)}): {args.strip}")


if __name__ == "__main__":
    main()
