"""Does the temporal loss make a stable network, and what does it cost in style loss?

    python -m scripts.quality.temporal_experiment --style-image ../shared/assets/styles/starry_night.jpg \
        --data ../shared/assets/train --held-out ../shared/assets/content --steps 1000 --weights 3,10

Trains networks with train.py on the same style, data, seed and step count, one with
``loss.temporal_weight=0`` and one for each of ``--weights``; then, on held-out photos, prints the
warping error on synthetic-motion clips (fastnst.core.temporal) and the style loss, with the changes
against the baseline. A run whose stylizer already exists in ``--out`` is reused. Extra arguments
after ``--`` go to every training run (e.g. ``-- loss.vgg_weights=random``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch

from fastnst.core.images import find_images, fit_long_side, load_rgb
from fastnst.core.modelfile import read_metadata
from fastnst.core.temporal import synthetic_clip, warping_error
from fastnst.inference.stylizer import Stylizer
from scripts.common import model_loss

ROOT = Path(__file__).resolve().parents[2]


def train(out: Path, weight: float, args: argparse.Namespace, extra: list[str]) -> Path:
    existing = out / f"temporal{weight:g}.safetensors"
    if existing.is_file() and read_metadata(existing).steps == args.steps:
        return existing
    cmd = [sys.executable, "train.py", "style=custom", f"style.image={args.style_image}",
           f"style.name=temporal{weight:g}", f"data.root={args.data}", f"data.image_size={args.image_size}",
           f"model={args.model}", f"trainer.max_steps={args.steps}", "trainer=cpu" if args.cpu else "trainer=default",
           f"loss.temporal_weight={weight}", f"hydra.run.dir={out}", "trainer.enable_progress_bar=false",
           f"trainer.val_check_interval={args.steps}", f"seed={args.seed}", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"training failed:\n{proc.stderr[-3000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def held_out(folder: Path, size: int) -> list[torch.Tensor]:
    return [fit_long_side(load_rgb(path), size) for path in find_images(folder)]


@torch.no_grad()
def evaluate(model: Path, photos: list[torch.Tensor], style_image: str) -> dict[str, float]:
    loss = model_loss(read_metadata(model), style_image)
    stylizer = Stylizer.from_file(model, device="cpu")
    stylize = lambda x: stylizer.stylize_tensor(x)  # noqa: E731
    style_losses, warp_errors = [], []
    for i, x in enumerate(photos):
        style_losses.append(float(loss(stylize(x), x)["style"]))
        warp_errors.append(warping_error(stylize, *synthetic_clip(x, frames=6, seed=i)))
    return {"style": sum(style_losses) / len(photos), "warp": sum(warp_errors) / len(photos)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style-image", required=True)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--held-out", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--weights", default="3,10", help="temporal weights to compare with 0")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--eval-size", type=int, default=192)
    parser.add_argument("--model", default="johnson_small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/temporal_experiment"))
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even where a GPU exists")
    args, extra = parser.parse_known_args(argv)
    extra = [e for e in extra if e != "--"]
    photos = held_out(args.held_out, args.eval_size)
    results = {}
    for weight in (0.0, *(float(w) for w in args.weights.split(","))):
        model = train(args.out.resolve() / f"w{weight:g}", weight, args, extra)
        results[weight] = evaluate(model, photos, args.style_image)
    base = results[0.0]
    print("| temporal_weight | warping error | change | style loss (held-out) | change |\n|---|---|---|---|---|")
    for weight, r in results.items():
        print(f"| {weight:g} | {r['warp']:.6f} | {100 * (r['warp'] / base['warp'] - 1):+.1f}% "
              f"| {r['style']:.5f} | {100 * (r['style'] / base['style'] - 1):+.1f}% |")
    print(f"\n{args.steps} steps, {args.model}, {args.image_size} px crops, seed {args.seed}; "
          f"evaluated on {len(photos)} held-out photos at {args.eval_size} px")

if __name__ == "__main__":
    main()
