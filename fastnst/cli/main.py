"""The ``fastnst`` command line: the parser and the dispatch to the commands (fastnst/cli/commands.py).

Plain argparse (Hydra stays in training). Errors are one line on stderr with a non-zero exit:
2 when nothing could be done (bad model, bad option), 1 when some inputs of a batch failed,
130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from fastnst.cli.commands import (
    cmd_add_style,
    cmd_app,
    cmd_convert,
    cmd_export,
    cmd_info,
    cmd_models,
    cmd_stylize,
    describe,
)
from fastnst.core.errors import FastNSTError
from fastnst.core.images import MAX_IMAGE_PIXELS


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_bind_dashed_values(sys.argv[1:] if argv is None else list(argv)))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except FastNSTError as err:
        print(f"error: {describe(err, getattr(args, 'flags', None))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _bind_dashed_values(argv: list[str]) -> list[str]:
    """``--shard -1/2`` -> ``--shard=-1/2``: argparse would take the value for an unknown flag and say only
    "expected one argument"; bound, it reaches the check that says what a shard must be."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] == "--shard" and arg.startswith("-") and arg != "-":
            out[-1] = f"--shard={arg}"
        else:
            out.append(arg)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastnst", description="Fast neural style transfer.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    s = sub.add_parser("stylize", help="stylize images, folders or videos",
                       description="Stylize images, folders, globs or videos ('-' reads stdin, writes stdout).")
    s.add_argument("inputs", nargs="+", metavar="INPUT")
    s.add_argument("-m", "--model",
                   help="a starter model's name (see `fastnst models`), a .safetensors stylizer or a Lightning .ckpt; "
                   "with --style-image, the multi-style model to add the painting to (default multistyle)")
    s.add_argument("--style-image", type=Path, metavar="PAINTING",
                   help="any painting as the style: its style is fitted onto --model in a few minutes, once "
                   "(cached; see `fastnst add-style`), then used")
    s.add_argument("-o", "--output", type=Path, help="output file (one input) or folder (several)")
    s.add_argument("-r", "--recursive", action="store_true", help="search folders recursively")
    s.add_argument("--overwrite", action="store_true", help="replace outputs that already exist (inputs never)")
    s.add_argument("--skip-existing", action="store_true", help="skip inputs whose output exists (resume a run)")
    s.add_argument("--shard", help="K/N: process only the K-th of N shares of the inputs (0 <= K < N), for N "
                   "processes or machines; 'auto' takes K and N from torchrun or SLURM. Implies --skip-existing")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    s.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16", "int8"],
                   help="auto: bf16 on CUDA and on CPUs with native bf16 (AMX, AVX512-BF16), fp16 on MPS, else fp32; "
                   "int8: a quantized graph on the openvino engine, 1.6-1.9x fp32's speed (needs the [int8] extra)")
    s.add_argument("--engine", default=None, choices=["auto", "torch", "openvino"],
                   help="auto (default, or $FASTNST_ENGINE): OpenVINO on the CPU where installed, else PyTorch")
    s.add_argument("--max-size", type=int, help="downscale so the long side is at most this (px)")
    s.add_argument("--max-pixels", type=int, default=MAX_IMAGE_PIXELS, help="refuse images declaring more pixels "
                   f"(decompression bombs; default {MAX_IMAGE_PIXELS:,}); 0: no limit, for huge scans")
    s.add_argument("--scale", type=float, default=1.0, help="run the network at this factor of the size "
                   "and resize back: below 1 gives larger strokes (default 1)")
    s.add_argument("--style", help="multi-style models: a style (great_wave), a blend "
                   "(starry_night:0.7,great_wave:0.3) or, for videos, a morph over the clip "
                   "(starry_night..great_wave); default: the first style")
    s.add_argument("--strength", type=float, default=1.0, help="0 keeps the photo, 1 full style (default 1)")
    s.add_argument("--preserve-color", action="store_true", help="keep the photo's colours")
    s.add_argument("--tile", type=int, help="process in tiles of this side (px); automatic when needed, 0 never")
    s.add_argument("--overlap", type=int, default=64, help="tile overlap, feathered (px, default 64)")
    s.add_argument("--batch-size", type=int, default=1, help="images of one size per forward pass")
    s.add_argument("--compile", action="store_true", help="torch.compile the network: a warm-up of ~20 s, "
                   "then faster (worth it for videos and big folders; see scripts/bench/speed.py)")
    s.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (default 95)")
    s.add_argument("--codec", default=None, help="video codec (default libx264 for mp4/mov/mkv)")
    s.add_argument("--crf", type=int, default=None, help="video quality: lower is better (x264 default 18)")
    s.add_argument("--temporal-blend", type=float, default=0.0,
                   help="video: blend each stylized frame with the previous one (0..0.9) to cut flicker")
    add_fit_options(s, prefix="fit-")
    s.set_defaults(func=cmd_stylize, flags={"steps": "--fit-steps", "lr": "--fit-lr", "photos": "--fit-photos",
                                            "content_weight": "--fit-content-weight"})

    f = sub.add_parser("add-style", help="make a model of any painting in minutes (fits its style onto a "
                       "multi-style model)", description="Fit a painting's style onto a trained multi-style model "
                       "(only the new style's instance-norm parameters train), and write the grown model.")
    f.add_argument("painting", type=Path)
    f.add_argument("--to", default=None, metavar="MODEL", help="the model to add it to (default: the multistyle "
                   "starter; a single-style model is grown into a two-style one)")
    f.add_argument("-o", "--output", type=Path, help="the model file to write (default: <painting>.safetensors "
                   "in this folder)")
    f.add_argument("--name", help="the style's name (default: from the painting's file name)")
    add_fit_options(f)
    f.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    # The painting is the positional argument; the base is --to; a painting's pixel limit is not a flag here.
    f.set_defaults(func=cmd_add_style, flags={"style_image": None, "model": "--to", "max_pixels": None})

    m = sub.add_parser("models", help="list the starter models that ship with fastnst")
    m.set_defaults(func=cmd_models)

    i = sub.add_parser("info", help="describe a model file")
    i.add_argument("model", help="a model file or a starter model's name")
    i.add_argument("--json", action="store_true", help="print the metadata as JSON")
    i.set_defaults(func=cmd_info)

    c = sub.add_parser("convert", help="convert a pytorch/examples fast_neural_style model (.pth/.model)")
    c.add_argument("model", type=Path)
    c.add_argument("-o", "--output", type=Path, help="default: beside it, as .safetensors")
    c.add_argument("--name", help="style name to record (default: the file's stem)")
    c.set_defaults(func=cmd_convert)

    e = sub.add_parser("export", help="export a model to ONNX or TorchScript")
    e.add_argument("model", help="a model file or a starter model's name")
    e.add_argument("--format", default="onnx", choices=["onnx", "torchscript"])
    e.add_argument("-o", "--output", type=Path)
    e.set_defaults(func=cmd_export)

    a = sub.add_parser("app", help="start the web app (photo, webcam and video in the browser)",
                       description="Start a local web app and print its address. Needs the [app] extra.")
    a.add_argument("--models", nargs="*", type=Path, default=[], metavar="DIR_OR_FILE",
                   help="model files or folders of them to offer beside the starter models")
    a.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this "
                   "machine only; 0.0.0.0 lets anyone who can reach it use the app)")
    a.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    a.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    a.add_argument("--engine", default=None, choices=["auto", "torch", "openvino"],
                   help="as for stylize (default auto)")
    a.add_argument("--fit-steps", type=int, default=None, help="Add a style: fitting steps (default as add-style)")
    a.add_argument("--vgg-weights", default=os.environ.get("FASTNST_VGG_WEIGHTS", "imagenet"),
                   help="Add a style: the loss network (imagenet, or a local file; $FASTNST_VGG_WEIGHTS)")
    a.set_defaults(func=cmd_app)
    return parser


def add_fit_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """How a painting is fitted (add-style; stylize --style-image, where they read --fit-steps, ...)."""
    from fastnst.inference.fitting import FitOptions

    parser.add_argument(f"--{prefix}steps", type=int, default=FitOptions.steps, dest="fit_steps", metavar="N",
                        help=f"fitting steps (default {FitOptions.steps}: under 30 s on an idle 2-core CPU with AMX)")
    parser.add_argument(f"--{prefix}photos", type=Path, dest="fit_photos", metavar="DIR",
                        help="photos to fit on (default: the four that ship with fastnst; works offline)")
    parser.add_argument(f"--{prefix}lr", type=float, default=FitOptions.lr, dest="fit_lr", help=argparse.SUPPRESS)
    parser.add_argument(f"--{prefix}content-weight", type=float, default=FitOptions.content_weight,
                        dest="fit_content_weight", metavar="W",
                        help=f"keep more of the photo (higher) or less (default {FitOptions.content_weight})")
    parser.add_argument("--vgg-weights", default=os.environ.get("FASTNST_VGG_WEIGHTS", "imagenet"), metavar="W",
                        help="the loss network for fitting: imagenet (torchvision's VGG16, downloaded once) or a "
                        "local file ($FASTNST_VGG_WEIGHTS)")
    if not prefix:
        parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
