"""Johnson et al. 2016, Table 1 and Figure 5, reproduced on this code and this machine:
the fast network against Gatys et al.'s optimisation (L-BFGS on the pixels), same loss object.

    python -m scripts.quality.compare --model starry_night.safetensors --content-dir photos/ \
        [--sizes 256,512,1024] [--iterations 100,300,500] [--images 4] [--plot compare.png]

Speed: seconds for Gatys at each iteration count and for one forward pass of the fast network,
per size, with the speed-up ratios (one run, same process). Quality: the fast network's total
perceptual loss on held-out photos, and the Gatys iteration at which the optimisation reaches it
(Johnson et al. report 50-100). Prints Markdown tables and writes a loss-vs-iteration plot (PNG).
The loss is rebuilt from the model file's metadata (same VGG weights, layers and weights).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from fastnst.core.errors import FastNSTError
from fastnst.core.images import find_images, load_rgb, resize
from fastnst.core.losses import PerceptualLoss
from fastnst.core.modelfile import read_metadata, resolve_model
from fastnst.inference.stylizer import Stylizer
from fastnst.training.gatys import GatysOptions, optimize
from scripts.common import model_loss, seconds, sync


def square(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centre crop to a square, resized to size x size (as Johnson et al. timed 256², 512², 1024²)."""
    h, w = x.shape[-2:]
    s = min(h, w)
    x = x[..., (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return resize(x, (size, size))


def gatys_run(loss: PerceptualLoss, content: torch.Tensor, iterations: int, init: str,
              device: torch.device) -> tuple[list[float], list[float]]:
    """Loss and elapsed seconds after each iteration."""
    times: list[float] = []
    sync(device)
    start = time.perf_counter()

    def clock(step: int, terms: dict[str, torch.Tensor], image: torch.Tensor) -> None:
        sync(device)
        times.append(time.perf_counter() - start)

    result = optimize(loss, content, GatysOptions(steps=iterations, init=init), callback=clock)
    return result.losses, times


def first_reaching(losses: list[float], target: float) -> int | None:
    return next((i + 1 for i, value in enumerate(losses) if value <= target), None)


def plot(curves: list[list[float]], fast_loss: float, path: Path) -> None:
    """Mean Gatys loss per iteration (log scale) with the fast network's loss as a line."""
    import math

    n = min(len(c) for c in curves)
    mean = [sum(c[i] for c in curves) / len(curves) for i in range(n)]
    w, h, m = 720, 420, 60
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    lo, hi = math.log10(min(min(mean), fast_loss)), math.log10(max(max(mean), fast_loss))
    hi = hi if hi > lo else lo + 1
    y = lambda v: h - m - (math.log10(v) - lo) / (hi - lo) * (h - 2 * m)  # noqa: E731
    x = lambda i: m + i / max(n - 1, 1) * (w - 2 * m)  # noqa: E731
    draw.rectangle([m, m, w - m, h - m], outline="black")
    draw.line([(x(i), y(v)) for i, v in enumerate(mean)], fill=(30, 90, 200), width=2)
    draw.line([(m, y(fast_loss)), (w - m, y(fast_loss))], fill=(210, 60, 40), width=2)
    draw.text((m, 20), "total perceptual loss (log) vs Gatys L-BFGS iteration", fill="black")
    draw.text((w - m - 200, y(fast_loss) - 14), "fast network", fill=(210, 60, 40))
    draw.text((m + 4, y(mean[0]) + 4), "Gatys et al.", fill=(30, 90, 200))
    for i in (0, n // 2, n - 1):
        draw.text((x(i) - 8, h - m + 6), str(i + 1), fill="black")
    for v in (lo, hi):
        draw.text((4, y(10**v) - 6), f"{10**v:.3g}", fill="black")
    img.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model file or a starter model's name")
    parser.add_argument("--content-dir", type=Path, required=True)
    parser.add_argument("--style-image", help="default: the one named in the model file")
    parser.add_argument("--vgg-weights", help="the loss network's weights (default: as the model file names them)")
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--iterations", default="100,300,500")
    parser.add_argument("--images", type=int, default=4, help="held-out photos for the quality comparison")
    parser.add_argument("--init", default="noise", choices=["noise", "content", "style"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--plot", type=Path, default=Path("compare.png"))
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        iterations = sorted(int(i) for i in args.iterations.split(","))
        photos = find_images(args.content_dir)[: args.images]
        if not photos:
            raise FastNSTError(f"{args.content_dir}: no images")
        model = resolve_model(args.model)
        meta = read_metadata(model)
        stylizer = Stylizer.from_file(model, args.device, precision="fp32")
        device = stylizer.device
        changes = {"vgg_weights": args.vgg_weights} if args.vgg_weights else {}
        loss = model_loss(meta, args.style_image, **changes).to(device)
    except (FastNSTError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    threads = f"CPU ({torch.get_num_threads()} threads)"
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else threads
    print(f"# fast network vs Gatys et al. — {hardware}, torch {torch.__version__}, "
          f"VGG weights: {loss.vgg.weights}, init: {args.init}\n")

    # Quality (Figure 5) at the first size; these runs also time Gatys at that size.
    size, last = sizes[0], iterations[-1]
    contents = [square(load_rgb(p), size).to(device) for p in photos]
    fast_losses, curves, times = [], [], []
    for x in contents:
        with torch.no_grad():
            fast_losses.append(float(loss(stylizer.stylize_tensor(x), x)["total"]))
        losses, elapsed = gatys_run(loss, x, last, args.init, device)
        curves.append(losses)
        times.append(elapsed)
    print(f"## Quality at {size}x{size} ({len(photos)} held-out photos)\n")
    cols = " | ".join(f"Gatys @{n}" for n in iterations)
    print(f"| photo | fast network loss | {cols} | Gatys iterations to match |")
    print("|---|---|" + "---|" * len(iterations) + "---|")
    matches = []
    for p, fast, curve in zip(photos, fast_losses, curves, strict=True):
        match = first_reaching(curve, fast)
        matches.append(match)
        at = " | ".join(f"{curve[n - 1]:.4g}" for n in iterations)
        print(f"| {p.name} | {fast:.4g} | {at} | {match if match else f'> {last}'} |")
    reached = [m for m in matches if m]
    summary = f"after a median of {statistics.median(reached):g} iterations" if reached else "not at all"
    print(f"\nGatys reaches the fast network's loss {summary} "
          f"({len(reached)} of {len(matches)} photos within {last} iterations).\n")
    plot(curves, statistics.mean(fast_losses), args.plot)

    # Speed (Table 1).
    print("## Speed (seconds; speed-up = Gatys time / fast network time)\n")
    print("| size | " + " | ".join(f"Gatys {n}" for n in iterations) + " | fast network | "
          + " | ".join(f"speed-up {n}" for n in iterations) + " |")
    print("|---|" + "---|" * (2 * len(iterations) + 1))
    for s in sizes:
        if s == size:
            gatys = [statistics.median(t[n - 1] for t in times) for n in iterations]
            x = contents[0]
        else:
            x = square(load_rgb(photos[0]), s).to(device)
            _, elapsed = gatys_run(loss, x, last, args.init, device)
            gatys = [elapsed[n - 1] for n in iterations]
        fast = seconds(lambda x=x: stylizer.stylize_tensor(x), device, warmup=1, repeats=5)
        print(f"| {s}x{s} | " + " | ".join(f"{g:.2f}" for g in gatys) + f" | {fast:.4f} | "
              + " | ".join(f"{g / fast:,.0f}x" for g in gatys) + " |")
    print(f"\nplot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
