"""Compare trained models of one style on held-out photos with one yardstick: the starters' study (issue 30).

    python -m scripts.quality.study --models a.safetensors,b.safetensors --reference starry_night \
        --content-dir ../shared/assets/content --vgg-weights ../shared/assets/vgg/vgg16_imagenet.safetensors

Per model, means over the photos: the held-out loss under the *reference* model's loss (one loss for every
model, whatever each was trained with: total, content, style, palette), and the **hatching index** at 512 px:
the energy of the output's finest detail (the image minus its 2x2 box blur) over the photo's own. Fine
diagonal hatching is detail the photo does not have, so it shows as an index well above 1; a painting's
strokes are coarser and raise it less. And the **grid index** at 512 px: how strongly the output repeats on
the network's 4-pixel grid (``grid_index``), over the photo's own: the hatching's signature.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from fastnst.core.blend import style_weights
from fastnst.core.images import find_images, fit_long_side, load_rgb, to_pil
from fastnst.core.modelfile import read_metadata, resolve_model
from fastnst.inference.stylizer import Stylizer
from scripts.common import model_loss


def grid_index(x: torch.Tensor, period: int = 4, ring: int = 3) -> float:
    """How strongly ``x`` (1, 3, H, W) repeats on a ``period``-pixel grid anchored at its top-left corner: the
    power of its luminance (under a Hann window) at the grid's diagonal frequencies (k/period, l/period
    cycles a pixel, k and l not 0), each over the median power of the frequencies around it, averaged.
    (The axes are left out: every photo's horizontal and vertical edges crowd them.) A network that
    downsamples by 4 and upsamples back with nearest-neighbour copies paints such a grid when it hatches;
    a photo or Magenta's result scores about 1-3 (docs/quality.md)."""
    g = x[0].float().mean(dim=0)
    h, w = (g.shape[0] // period) * period, (g.shape[1] // period) * period
    g = g[:h, :w] - g[:h, :w].mean()
    g = g * torch.hann_window(h, periodic=False)[:, None] * torch.hann_window(w, periodic=False)[None]
    power = torch.fft.fft2(g).abs().pow(2)
    near = [(dy, dx) for dy in range(-ring, ring + 1) for dx in range(-ring, ring + 1) if (dy, dx) != (0, 0)]
    ratios = []
    for ky in range(1, period):
        for kx in range(1, period):
            r, c = ky * h // period, kx * w // period
            around = torch.stack([power[(r + dy) % h, (c + dx) % w] for dy, dx in near])
            ratios.append(float(power[r, c] / around.median().clamp_min(1e-20)))
    return sum(ratios) / len(ratios)


def fine_detail(x: torch.Tensor) -> float:
    """Mean square of ``x`` minus its 2x2 box blur (the top octave of its detail)."""
    blurred = F.interpolate(F.avg_pool2d(x, 2), size=x.shape[-2:], mode="nearest")
    return float((x - blurred).pow(2).mean())


@torch.no_grad()
def heldout_losses(stylizer: Stylizer, loss: torch.nn.Module, photos: list[Path], size: int,
                   style: torch.Tensor | None = None) -> dict[str, float]:
    """Each loss term's mean over ``photos`` at a long side of ``size`` px (the campaign's milestones use it too);
    ``style``: a multi-style network's blend weights (``fastnst.core.blend.style_weights``)."""
    terms: dict[str, list[float]] = {}
    for photo in photos:
        x = fit_long_side(load_rgb(photo), size)
        out = stylizer.network(x, style)
        for k, v in loss(out.clamp(0, 1), x).items():
            terms.setdefault(k, []).append(float(v))
    return {k: statistics.mean(v) for k, v in terms.items()}


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="comma-separated model files or starter names")
    parser.add_argument("--reference", required=True, help="the model whose loss judges them all")
    parser.add_argument("--content-dir", type=Path, required=True)
    parser.add_argument("--vgg-weights", required=True)
    parser.add_argument("--size", type=int, default=256, help="long side for the losses (px)")
    parser.add_argument("--hatch-size", type=int, default=512, help="long side for the hatching index (px)")
    parser.add_argument("--style", help="the style a multi-style model paints (default: the reference's style)")
    parser.add_argument("--crops", type=Path, help="also write 1:1 middle crops of the 512 px results here (JPEG)")
    parser.add_argument("--crop-photos", default="golden_gate,chelsea_cat,tubingen", help="photo stems, one row each")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    loss = model_loss(read_metadata(resolve_model(args.reference)), vgg_weights=args.vgg_weights)
    photos = find_images(args.content_dir)
    print("| model | held-out total | content | style | palette | hatching index | grid index |")
    print("|---|---|---|---|---|---|---|")
    crop_photos = [p for stem in args.crop_photos.split(",") for p in photos if p.stem == stem]
    columns: list[list[Image.Image]] = []
    style = args.style or read_metadata(resolve_model(args.reference)).style_names[0]
    for name in args.models.split(","):
        stylizer = Stylizer.from_file(resolve_model(name), device="cpu", precision="fp32", engine="torch")
        names = read_metadata(resolve_model(name)).style_names
        weights = style_weights(style, names) if len(names) > 1 else None
        if args.crops:
            columns.append([middle_crop(to_pil(stylizer.network(fit_long_side(load_rgb(p), args.hatch_size),
                                                                weights)), 256) for p in crop_photos])
        mean = heldout_losses(stylizer, loss, photos, args.size, style=weights)
        hatch, grid = [], []
        for photo in photos:
            big = fit_long_side(load_rgb(photo), args.hatch_size)
            out = stylizer.network(big, weights).clamp(0, 1)
            hatch.append(fine_detail(out) / max(fine_detail(big), 1e-8))
            grid.append(grid_index(out) / max(grid_index(big), 1e-8))
        print(f"| {Path(name).parent.name or name} | {mean['total']:.3f} | {mean['content']:.3f} | "
              f"{mean['style']:.3f} | {mean.get('palette', 0):.4f} | {statistics.geometric_mean(hatch):.2f} | "
              f"{statistics.geometric_mean(grid):.1f} |", flush=True)
    if args.crops:
        sheet = Image.new("RGB", (256 * len(columns), 256 * len(crop_photos)))
        for j, column in enumerate(columns):
            for i, crop in enumerate(column):
                sheet.paste(crop, (256 * j, 256 * i))
        sheet.save(args.crops, quality=92)
    return 0


def middle_crop(image: Image.Image, size: int) -> Image.Image:
    """The ``size`` x ``size`` middle of ``image``, at 1:1 (what a person sees when they zoom in)."""
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return image.crop((left, top, left + size, top + size))


if __name__ == "__main__":
    raise SystemExit(main())
