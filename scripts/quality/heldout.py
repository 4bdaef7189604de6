"""How much of the painting does a model put into held-out photos, and how much of the photo does it keep?

    python -m scripts.quality.heldout --model starry_night --content-dir ../shared/assets/content \
        --vgg-weights ../shared/assets/vgg/vgg16_standin.safetensors [--size 256] [--gatys-steps 30]
        [--min-style-cut 5] [--max-content-ratio 3] [--style NAME]

For each photo, with the loss the model was trained with (rebuilt from its metadata; the VGG can be
swapped with --vgg-weights, as a model's file names the weights it was trained on, not their path):
the style loss of the photo itself, of the model's output and (with --gatys-steps) of a Gatys et al.
run from the photo on the same loss; the content loss of the output and of the Gatys result. Prints a
Markdown table and the means. The checks make it fail (exit 1) when the model cuts the photo's style
loss by less than --min-style-cut times, or its content loss exceeds --max-content-ratio times the
Gatys result's: a change that breaks the looks shows up here as numbers. A multi-style model is
judged style by style (all of them, or --style), each against its own painting.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from fastnst.core.errors import FastNSTError
from fastnst.core.images import find_images, fit_long_side, load_rgb
from fastnst.core.modelfile import ModelMeta, read_metadata, resolve_model
from fastnst.inference.stylizer import StylizeOptions, Stylizer
from fastnst.training.gatys import GatysOptions, optimize
from scripts.common import model_loss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model file or a starter model's name")
    parser.add_argument("--content-dir", type=Path, required=True)
    parser.add_argument("--vgg-weights", help="judge with these VGG weights (default: the model's own)")
    parser.add_argument("--size", type=int, default=256, help="long side of the photos (px)")
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--gatys-steps", type=int, default=0, help="also run Gatys et al. (L-BFGS) this long")
    parser.add_argument("--gatys-images", type=int, default=None, help="run Gatys on the first N photos only")
    parser.add_argument("--min-style-cut", type=float, default=None)
    parser.add_argument("--max-content-ratio", type=float, default=None)
    parser.add_argument("--style", action="append", help="multi-style models: judge this style (repeatable; "
                        "default: every style)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    try:
        path = resolve_model(args.model)
        meta = read_metadata(path)
        stylizer = Stylizer.from_file(path, device="cpu", precision="fp32", engine="torch")
        styles = args.style or (meta.styles or [None])
        for style in styles:
            stylizer.style_weights(style)  # an unknown name fails here, before any work
        photos = find_images(args.content_dir)[: args.images]
        if not photos:
            raise FastNSTError(f"{args.content_dir}: no images")
    except FastNSTError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    status = 0
    for style in styles:
        status = max(status, judge(stylizer, meta, path, style, photos, args))
    return status


def judge(stylizer: Stylizer, meta: ModelMeta, path: Path, style: str | None, photos: list[Path],
          args: argparse.Namespace) -> int:
    """One table (and its checks) for one style of the model."""
    changes = {"vgg_weights": args.vgg_weights} if args.vgg_weights else {}
    loss = model_loss(meta, style_image=meta.image_of(style) if style else None, **changes)
    options = StylizeOptions(style=style)
    name = f"{meta.style_name} / {style}" if style else meta.style_name
    print(f"# {name}: {path.name} ({meta.description or 'no description'}), judged with "
          f"{loss.vgg.weights if args.vgg_weights else meta.loss.get('vgg_weights')} at {args.size} px\n")
    gatys = " | Gatys style | Gatys content" if args.gatys_steps else ""
    print(f"| photo | photo style | model style | style cut | model content{gatys} |")
    print("|---|---|---|---|---|" + ("---|---|" if args.gatys_steps else ""))
    cuts, contents, totals, gatys_contents, gatys_cuts = [], [], [], [], []
    gatys_images = len(photos) if args.gatys_images is None else args.gatys_images
    for i, photo in enumerate(photos):
        x = fit_long_side(load_rgb(photo), args.size)
        with torch.no_grad():
            before = loss(x, x)
            after = loss(stylizer.stylize_tensor(x, options), x)
        cut = float(before["style"]) / max(float(after["style"]), 1e-12)
        cuts.append(cut)
        contents.append(float(after["content"]))
        totals.append(float(after["total"]))
        row = (f"| {photo.name} | {float(before['style']):.4g} | {float(after['style']):.4g} | {cut:.1f}x "
               f"| {float(after['content']):.4g}")
        if args.gatys_steps and i < gatys_images:
            result = optimize(loss, x, GatysOptions(steps=args.gatys_steps))
            with torch.no_grad():
                g = loss(result.image, x)
            gatys_contents.append(float(g["content"]))
            gatys_cuts.append(float(before["style"]) / max(float(g["style"]), 1e-12))
            row += f" | {float(g['style']):.4g} | {float(g['content']):.4g}"
        elif args.gatys_steps:
            row += " | | "
        print(row + " |", flush=True)
    mean_cut, mean_content = statistics.geometric_mean(cuts), statistics.mean(contents)
    print(f"\nstyle loss cut (geometric mean): {mean_cut:.1f}x; content loss (mean): {mean_content:.4g}; "
          f"total loss (mean): {statistics.mean(totals):.4g}", end="")
    ratio = None
    if gatys_contents:  # the model's content loss on the same photos as the Gatys runs
        ratio = statistics.mean(contents[: len(gatys_contents)]) / statistics.mean(gatys_contents)
        print(f"; Gatys ({len(gatys_contents)} photos): style cut {statistics.geometric_mean(gatys_cuts):.1f}x, "
              f"content {statistics.mean(gatys_contents):.4g}; model/Gatys content {ratio:.2f}x", end="")
    print("\n")
    failed = []
    if args.min_style_cut is not None and mean_cut < args.min_style_cut:
        failed.append(f"style loss cut {mean_cut:.2f}x is below {args.min_style_cut}x")
    if args.max_content_ratio is not None and ratio is not None and ratio > args.max_content_ratio:
        failed.append(f"content loss {ratio:.2f}x the Gatys result's is above {args.max_content_ratio}x")
    for message in failed:
        print(f"FAIL: {message}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
