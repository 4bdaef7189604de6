"""Do the fast engines paint what PyTorch fp32 paints? PSNR of each engine and precision against it, on
held-out photos with trained models (8-bit images, as saved):

    python -m scripts.quality.engines --models starry_night,great_wave --content-dir ../shared/assets/content \
        [--max-size 512] [--min-psnr 40]

Rows: every engine/precision this machine runs (bf16 only where the CPU has it natively, int8 where NNCF
is installed), plus the tiled OpenVINO path (shared norm statistics) against untiled PyTorch. Exit 1 if a
row's lowest PSNR is below --min-psnr (--min-psnr-int8 for int8 rows).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from fastnst.core.device import native_bf16_cpu
from fastnst.core.images import find_images, fit_long_side, load_rgb, to_pil
from fastnst.inference.engines import openvino_available
from fastnst.inference.quantize import nncf_available
from fastnst.inference.stylizer import StylizeOptions, Stylizer


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    a8, b8 = (t.mul(255).round().clamp(0, 255) for t in (a, b))
    mse = (a8 - b8).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(255.0 ** 2 / mse)).item()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True)
    parser.add_argument("--content-dir", type=Path, required=True)
    parser.add_argument("--max-size", type=int, default=512)
    parser.add_argument("--min-psnr", type=float, default=40.0, help="the gate for fp32/bf16 rows")
    parser.add_argument("--min-psnr-int8", type=float, default=30.0, help="the gate for int8 rows (quantized: "
                        "a few levels per pixel)")
    parser.add_argument("--save", type=Path, help="write each model's worst int8 photo beside fp32 here")
    args = parser.parse_args(argv)
    paths = [("torch", "bf16", None)] if native_bf16_cpu() else []
    if openvino_available():
        paths += [("openvino", "fp32", None), ("openvino", "fp32", 256)]
        paths += [("openvino", "bf16", None)] if native_bf16_cpu() else []
        paths += [("openvino", "int8", None)] if nncf_available() else []
    photos = [fit_long_side(load_rgb(p), args.max_size, upscale=False) for p in find_images(args.content_dir)]
    print(f"{len(photos)} photos at long side {args.max_size}; native bf16: {native_bf16_cpu()}\n")
    print("| model | engine | precision | tiles | PSNR min | PSNR mean |")
    print("|---|---|---|---|---|---|")
    failed = False
    for model in args.models.split(","):
        reference = Stylizer.from_file(model, device="cpu", precision="fp32", engine="torch")
        expected = [reference.stylize_tensor(x) for x in photos]
        for engine, precision, tile in paths:
            stylizer = Stylizer.from_file(model, device="cpu", precision=precision, engine=engine)
            options = StylizeOptions(tile=tile or 0, overlap=64)
            scores = [psnr(stylizer.stylize_tensor(x, options), y) for x, y in zip(photos, expected, strict=True)]
            low = min(scores)
            failed |= low < (args.min_psnr_int8 if precision == "int8" else args.min_psnr)
            if args.save and precision == "int8":
                worst = min(range(len(scores)), key=scores.__getitem__)
                pair = torch.cat([expected[worst], stylizer.stylize_tensor(photos[worst], options)], -1)
                args.save.mkdir(parents=True, exist_ok=True)
                to_pil(pair[0]).save(args.save / f"int8_{model}.png")
            mean = sum(scores) / len(scores)
            print(f"| {model} | {engine} | {precision} | {tile or 'no'} | {low:.1f} | {mean:.1f} |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
