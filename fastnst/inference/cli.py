"""The ``fastnst`` command: stylize images, folders and videos; inspect and export models.

Plain argparse (Hydra stays in training). Errors are one line on stderr with a non-zero exit:
2 when nothing could be done (bad model, bad option), 1 when some inputs of a batch failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fastnst.core.errors import FastNSTError
from fastnst.core.images import IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS, find_images
from fastnst.inference.shard import local_rank, parse_shard, remove_partials

if TYPE_CHECKING:  # the heavy modules are imported by the commands that need them
    from fastnst.inference.stylizer import StylizeOptions, Stylizer

STDIO = Path("-")


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path
    key: str = ""  # the path inside the folder it was found in: what --shard splits on


@dataclass
class Plan:
    jobs: list[Job]
    failures: list[str]
    skipped: list[Job]  # outputs that exist already (--skip-existing)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_bind_dashed_values(sys.argv[1:] if argv is None else list(argv)))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except FastNSTError as err:
        print(f"error: {describe(err)}", file=sys.stderr)
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


def describe(err: FastNSTError) -> str:
    """The library's message, with the command-line flag for the argument it names."""
    flag = f"--{err.param.replace('_', '-')}" if err.param else None
    return f"{err}" + (f" ({flag})" if flag and flag not in str(err) else "")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastnst", description="Fast neural style transfer.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    s = sub.add_parser("stylize", help="stylize images, folders or videos",
                       description="Stylize images, folders, globs or videos ('-' reads stdin, writes stdout).")
    s.add_argument("inputs", nargs="+", metavar="INPUT")
    s.add_argument("-m", "--model", required=True,
                   help="a starter model's name (see `fastnst models`), a .safetensors stylizer or a Lightning .ckpt")
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
                   "then faster (worth it for videos and big folders; see scripts/bench.py)")
    s.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (default 95)")
    s.add_argument("--codec", default=None, help="video codec (default libx264 for mp4/mov/mkv)")
    s.add_argument("--crf", type=int, default=None, help="video quality: lower is better (x264 default 18)")
    s.add_argument("--temporal-blend", type=float, default=0.0,
                   help="video: blend each stylized frame with the previous one (0..0.9) to cut flicker")
    s.set_defaults(func=cmd_stylize)

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
    a.set_defaults(func=cmd_app)
    return parser


def cmd_models(args: argparse.Namespace) -> int:
    from fastnst.core.modelfile import read_metadata, starter_models

    starters = starter_models()
    if not starters:
        print("no starter models are installed", file=sys.stderr)
        return 1
    for name, path in starters.items():
        meta = read_metadata(path)
        styles = f"[{len(meta.styles)} styles: {', '.join(meta.styles)}] " if meta.styles else ""
        print(f"{name:<16} {styles}{meta.description or '-'}")
    print(f"\nuse one with: fastnst stylize photo.jpg --model {next(iter(starters))}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from fastnst.core.modelfile import load_network, resolve_model

    network, meta = load_network(resolve_model(args.model))
    parameters = sum(p.numel() for p in network.parameters())
    if args.json:
        print(json.dumps({**meta.to_dict(), "parameters": parameters}, indent=2))
        return 0
    loss = meta.loss
    rows = [("style", meta.style_name),
            *([("styles", f"{len(meta.styles)}: {', '.join(meta.styles)} (--style NAME, A:0.7,B:0.3 or A..B)")]
              if meta.styles else []),
            *([("style images", ", ".join(meta.style_images) or "?")] if meta.styles else
              [("style image", meta.style_image or "?"), ("style image sha256", meta.style_sha256 or "?")]),
            ("network", f"TransformerNet {meta.network}, {parameters:,} parameters"),
            ("steps trained", meta.steps), ("training crop", f"{meta.image_size} px" if meta.image_size else "?"),
            ("loss", f"{loss.get('vgg')} ({loss.get('vgg_weights')} weights), content "
                     f"{loss.get('content_weight')}×{list(loss.get('content_layers', {}))} "
                     f"(norm {loss.get('content_norm', 'none')}), style "
                     f"{loss.get('style_weight')}×{list(loss.get('style_layers', {}))} "
                     f"(norm {loss.get('style_norm', 'none')}), tv {loss.get('tv_weight')}, "
                     f"palette {loss.get('palette_weight', 0.0)}"),
            ("temporal weight", meta.temporal_weight), ("description", meta.description or "-"),
            ("fastnst version", meta.fastnst_version)]
    for key, value in rows:
        print(f"{key:>20}: {value}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from fastnst.inference.convert import convert

    print(convert(args.model, args.output, args.name))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from fastnst.inference.export import export

    print(export(args.model, args.format, args.output))
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    try:
        from fastnst.app.server import serve
    except ImportError as err:  # the core install leaves the web server out
        missing = (err.name or "a package").split(".")[0]
        raise FastNSTError(f"the web app needs the [app] extra: pip install 'fastnst[app]' ({missing} is "
                           "missing)") from None
    if not 0 <= args.port <= 65535:
        raise FastNSTError(f"port must be from 0 to 65535, got {args.port}", param="port")
    serve(args.models, args.host, args.port, args.device, args.engine)
    return 0


def _expand(raw: str, recursive: bool) -> list[Path]:
    """One INPUT argument -> media files. Raises FastNSTError when it names nothing usable."""
    if raw == "-":
        return [STDIO]
    path = Path(raw).expanduser()
    if path.is_dir():
        from fastnst.inference.video import VIDEO_EXTENSIONS

        files = find_images(path, recursive, IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)
        if not files:
            hint = "" if recursive else " (add -r to search subfolders)"
            raise FastNSTError(f"{path}: no images or videos in this folder{hint}")
        return files
    if path.exists():
        return [path]
    if glob.has_magic(raw):
        files = sorted(Path(p) for p in glob.glob(raw, recursive=True) if Path(p).is_file())
        if files:
            return files
        raise FastNSTError(f"{raw}: the pattern matches no file")
    raise FastNSTError(f"{raw}: no such file or folder")


def _is_earlier_output(path: Path, style: str) -> bool:
    """``x_<style>.jpg`` beside ``x.jpg``: what an earlier run over this folder wrote."""
    suffix = f"_{style}"
    return path.stem.endswith(suffix) and path.with_name(path.stem[: -len(suffix)] + path.suffix).exists()


def _unique(target: Path, taken: set[Path]) -> Path:
    """``target``, or ``<stem>_2<ext>``, ``_3``, ... if this run already writes there."""
    candidate, n = target, 1
    while candidate.resolve() in taken:
        n += 1
        candidate = target.with_name(f"{target.stem}_{n}{target.suffix}")
    return candidate


def plan(inputs: list[str], output: Path | None, recursive: bool, style: str,
         overwrite: bool = False, skip_existing: bool = False) -> Plan:
    """Map inputs to outputs. Next to the input as <stem>_<style><ext> by default; into ``output``
    (a file for one input, ``-`` for stdout, else a folder that mirrors input folders).

    Never overwrites an input; never an existing file unless ``overwrite`` (``skip_existing``: an
    existing output counts as done); two inputs never share an output (the later one gets ``_2``);
    a folder's earlier outputs are not stylized again."""
    jobs, failures, skipped = [], [], []
    expanded: list[tuple[Path, Path | None]] = []  # (file, the folder it was found in)
    for raw in inputs:
        try:
            base = Path(raw).expanduser()
            found = _expand(raw, recursive)
            if base.is_dir():
                kept = [f for f in found if not _is_earlier_output(f, style)]
                if len(kept) < len(found):
                    print(f"note: {base}: skipped {len(found) - len(kept)} earlier output(s) (*_{style}.*)",
                          file=sys.stderr)
                found = kept
            expanded += [(f, base if base.is_dir() else None) for f in found]
        except FastNSTError as err:
            failures.append(describe(err))
    single = len(expanded) == 1 and len(inputs) == 1
    if output == STDIO and not single:
        raise FastNSTError(f"-o - writes one image to stdout, but there are {len(expanded)} inputs", param="output")
    if output is not None and output != STDIO and output.is_file() and not (single and output.suffix):
        raise FastNSTError(f"{output} is an existing file; give a folder for the outputs (or a new file name for "
                           "one input)", param="output")
    if output is not None and output != STDIO and output.suffix and not output.is_dir() and not single:
        raise FastNSTError(f"{output} names one file, but there are {len(expanded)} inputs; give a folder",
                           param="output")
    sources = {src.resolve() for src, _ in expanded if src != STDIO}
    taken: set[Path] = set()
    for src, folder in expanded:
        if src == STDIO or output == STDIO:
            jobs.append(Job(src, output or STDIO, src.name))
            continue
        name = f"{src.stem}_{style}{src.suffix}"
        if output is None:
            target = src.with_name(name)
        elif single and not output.is_dir() and output.suffix:
            target = output
        else:
            relative = src.relative_to(folder).with_name(name) if folder else Path(name)
            target = output / relative
        target = _unique(target, taken)
        key = (src.relative_to(folder) if folder else Path(src.name)).as_posix()
        if target.resolve() in sources:
            failures.append(f"{src}: its output {target} is one of the inputs; not overwriting it")
        elif target.exists() and skip_existing and not overwrite:
            taken.add(target.resolve())
            skipped.append(Job(src, target, key))
        elif target.exists() and not overwrite:
            failures.append(f"{target} exists; not overwriting it (--overwrite replaces existing outputs, "
                            "--skip-existing skips them)")
        else:
            taken.add(target.resolve())
            jobs.append(Job(src, target, key))
    return Plan(jobs, failures, skipped)


def cmd_stylize(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fastnst.inference.stylizer import StylizeOptions, Stylizer
    from fastnst.inference.video import VIDEO_EXTENSIONS, VideoOptions, stylize_video

    # Every option is checked here, before a model is loaded or a file is read.
    options = StylizeOptions(max_size=args.max_size, scale=args.scale, strength=args.strength,
                             preserve_color=args.preserve_color, tile=args.tile, overlap=args.overlap,
                             style=args.style)
    video_options = VideoOptions(codec=args.codec, crf=args.crf, batch_size=max(args.batch_size, 1),
                                 temporal_blend=args.temporal_blend)
    if args.shard is not None:
        parse_shard(args.shard)  # a bad --shard (an empty $SHARD too) fails before the model loads
    if args.batch_size < 1:
        raise FastNSTError("batch size must be at least 1", param="batch_size")
    if args.max_pixels < 0:
        raise FastNSTError(f"max_pixels must be 0 (no limit) or more, got {args.max_pixels}", param="max_pixels")
    if not 1 <= args.quality <= 100:
        raise FastNSTError(f"quality must be from 1 to 100, got {args.quality}", param="quality")
    local = local_rank() if args.shard is not None else None
    if local is not None and args.device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():  # one process per GPU: each takes its own
            torch.cuda.set_device(local % torch.cuda.device_count())
    stylizer = Stylizer.from_file(args.model, args.device, args.precision, compile=args.compile, engine=args.engine)
    if stylizer.device.type == "cuda":
        import torch

        torch.backends.cudnn.benchmark = True  # this process stylizes many frames of one size: autotune once
    shard = parse_shard(args.shard) if args.shard is not None else None
    planned = plan(args.inputs, args.output, args.recursive, stylizer.style_label(args.style), args.overwrite,
                   args.skip_existing or shard is not None)
    jobs, failures, skipped = planned.jobs, planned.failures, planned.skipped
    if shard is not None:
        jobs = [j for j in jobs if shard.owns(j.key)]
        skipped = [j for j in skipped if shard.owns(j.key)]
        for job in jobs:
            remove_partials(job.target)  # a killed earlier run of this shard
    total = len(jobs) + len(failures)
    images = [j for j in jobs if j.source.suffix.lower() not in VIDEO_EXTENSIONS]
    videos = [j for j in jobs if j.source.suffix.lower() in VIDEO_EXTENSIONS]
    if images and args.style and ".." in args.style:
        raise FastNSTError(f"a morph ({args.style}) moves over a video's frames; {len(images)} of the inputs are "
                           "images: give one style or a blend for them", param="style")
    bar = tqdm(total=len(images), unit="image", disable=len(images) < 2, file=sys.stderr)
    for batch in _batches(images, args.batch_size):
        failures += _stylize_images(stylizer, batch, options, args.quality, args.max_pixels)
        bar.update(len(batch))
    bar.close()
    # Batches of frames pay on a GPU; on a CPU one frame at a time is faster (scripts/bench.py: 0.76x at 4).
    frames_per_batch = args.batch_size if args.batch_size > 1 else (4 if stylizer.device.type == "cuda" else 1)
    for job in videos:
        try:
            job.target.parent.mkdir(parents=True, exist_ok=True)
            if job.target == STDIO:
                raise FastNSTError(f"{job.source}: a video cannot be written to stdout; name an output file")
            stylize_video(stylizer, job.source, job.target, options,
                          dataclasses.replace(video_options, batch_size=frames_per_batch))
            _report(job.target)
        except FastNSTError as err:
            failures.append(describe(err))
    for message in failures:
        print(f"error: {message}", file=sys.stderr)
    if failures and total > 1:
        print(f"{len(failures)} of {total} inputs failed", file=sys.stderr)
    if shard is not None or args.skip_existing:
        where = f"shard {shard}: " if shard is not None else ""
        print(f"{where}{total - len(failures)} done, {len(skipped)} skipped (output exists), {len(failures)} failed",
              file=sys.stderr)
    return 1 if failures else 0


def _batches(jobs: list[Job], size: int) -> Iterator[list[Job]]:
    for start in range(0, len(jobs), size):
        yield jobs[start:start + size]


def _stylize_images(stylizer: Stylizer, batch: list[Job], options: StylizeOptions, quality: int,
                    max_pixels: int) -> list[str]:

    from fastnst.core.images import decode_image, open_image, save_image

    failures, loaded = [], []
    limit = max_pixels or None
    for job in batch:
        try:
            if job.source == STDIO:
                img = decode_image(sys.stdin.buffer.read(), "stdin", limit, options.max_size)
                loaded.append((job, img))
            else:
                loaded.append((job, open_image(job.source, limit, options.max_size)))
        except FastNSTError as err:
            failures.append(describe(err))
    if not loaded:
        return failures
    results = stylizer.stylize_many([img for _, img in loaded], options)
    for (job, src), out in zip(loaded, results, strict=True):
        try:
            if job.target == STDIO:
                fmt = src.format or "PNG"
                out = out.convert("RGB") if fmt == "JPEG" else out
                out.save(sys.stdout.buffer, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
                sys.stdout.buffer.flush()
            else:
                job.target.parent.mkdir(parents=True, exist_ok=True)
                save_image(out, job.target, quality=quality)
                _report(job.target)
        except (FastNSTError, OSError) as err:
            failures.append(str(err) if isinstance(err, FastNSTError) else f"cannot write {job.target}: {err}")
    return failures


def _report(path: Path) -> None:
    print(path, flush=True)


if __name__ == "__main__":
    sys.exit(main())
