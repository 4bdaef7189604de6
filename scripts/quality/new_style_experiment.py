"""How fast does a trained multi-style network learn a new style when only its (γ, β) train?

    python -m scripts.quality.new_style_experiment --base multi4.safetensors --style composition_vii \
        --reference composition_vii --data ../shared/assets/train \
        --vgg-weights ../shared/assets/vgg/vgg16_standin.safetensors --steps 300 --every 50 --lrs 1e-3,1e-2

For each learning rate, one `train.py style=STYLE init_from=BASE` run (shared weights frozen) keeps a
checkpoint every --every steps; each checkpoint is judged on the held-out photos (--content-dir, at
--size px) with the loss the base was trained with, and so is --reference, a single-style model of the
same style (a starter's name or a file). Prints the held-out loss after each checkpoint, with the
wall time to reach it, and the first step at which the new style's held-out total loss is at or
below the reference's. The model files stay under --out.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from fastnst.core.images import find_images, fit_long_side, load_rgb
from fastnst.core.modelfile import read_metadata, resolve_model
from fastnst.inference.stylizer import StylizeOptions, Stylizer
from scripts.common import model_loss

ROOT = Path(__file__).resolve().parents[2]


def held_out(model: Path, style: str | None, photos: list[Path], size: int, vgg: str) -> dict[str, float]:
    """Mean held-out total, content and style loss of ``model`` (style ``style``) on ``photos``."""
    meta = read_metadata(model)
    loss = model_loss(meta, style_image=meta.image_of(style) if style else None, vgg_weights=vgg)
    stylizer = Stylizer.from_file(model, device="cpu", precision="fp32", engine="torch")
    options = StylizeOptions(style=style if stylizer.multi_style else None)
    terms: dict[str, list[float]] = {"total": [], "content": [], "style": []}
    with torch.no_grad():
        for photo in photos:
            x = fit_long_side(load_rgb(photo), size)
            result = loss(stylizer.stylize_tensor(x, options), x)
            for key in terms:
                terms[key].append(float(result[key]))
    return {key: statistics.mean(values) for key, values in terms.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the trained model to add the style to")
    parser.add_argument("--style", required=True, help="a conf/style name")
    parser.add_argument("--reference", required=True, help="a single-style model of that style")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--vgg-weights", required=True)
    parser.add_argument("--content-dir", type=Path, default=ROOT.parent / "shared" / "assets" / "content")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--lrs", default="1e-3,1e-2")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "new_style")
    args, overrides = parser.parse_known_args(argv)
    photos = find_images(args.content_dir)
    reference = held_out(resolve_model(args.reference), None, photos, args.size, args.vgg_weights)
    print(f"reference {args.reference}: held-out total {reference['total']:.4g} (content {reference['content']:.4g}, "
          f"style {reference['style']:.4g}) on {len(photos)} photos at {args.size} px\n", flush=True)
    print("| lr | step | wall s | held-out total | content | style | reached the reference |")
    print("|---|---|---|---|---|---|---|")
    for lr in args.lrs.split(","):
        run_dir = (args.out / f"{args.style}_lr{lr}").resolve()
        cmd = [sys.executable, "train.py", f"style={args.style}", f"init_from={Path(args.base).resolve()}",
               f"data.root={args.data}", f"data.image_size={args.image_size}", "data.batch_size=4",
               "data.num_workers=1", f"loss.vgg_weights={args.vgg_weights}", "trainer=cpu",
               f"trainer.max_steps={args.steps}", f"trainer.val_check_interval={args.every}",
               "trainer.enable_progress_bar=false", f"checkpoint_every_n_steps={args.every}",
               "callbacks.model_checkpoint.save_top_k=-1", f"optimizer.lr={lr}", f"hydra.run.dir={run_dir}",
               *[o for o in overrides if o != "--"]]
        start = time.time()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        reached = None
        checkpoints = sorted((run_dir / "checkpoints").glob("step*.ckpt"), key=lambda p: p.stat().st_mtime)
        for ckpt in checkpoints:
            step = read_metadata(ckpt).steps or 0
            result = held_out(ckpt, args.style, photos, args.size, args.vgg_weights)
            hit = result["total"] <= reference["total"]
            reached = reached or (step if hit else None)
            print(f"| {lr} | {step} | {ckpt.stat().st_mtime - start:.0f} | {result['total']:.4g} | "
                  f"{result['content']:.4g} | {result['style']:.4g} | {'yes' if hit else 'no'} |", flush=True)
        print(f"\nlr {lr}: reached the reference at step {reached}" if reached else
              f"\nlr {lr}: not reached in {args.steps} steps", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
