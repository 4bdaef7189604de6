"""The ``fastnst`` commands: each checks its options, then calls the library (fastnst.inference, fastnst.app)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

from fastnst.core.errors import FastNSTError


def describe(err: FastNSTError, flags: dict[str, str | None] | None = None) -> str:
    """The library's message, with the command-line flag for the argument it names: ``flags`` maps a library
    argument to the command's own flag (None: the command has none to offer)."""
    flags = flags or {}
    flag = flags[err.param] if err.param in flags else f"--{err.param.replace('_', '-')}" if err.param else None
    return f"{err}" + (f" ({flag})" if flag and flag not in str(err) else "")


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
    from fastnst.core.terms import all_terms

    network, meta = load_network(resolve_model(args.model))
    parameters = sum(p.numel() for p in network.parameters())
    if args.json:
        print(json.dumps({**meta.to_dict(), "parameters": parameters}, indent=2))
        return 0
    loss = meta.loss
    rows = [("style", meta.style_name),
            *([("styles", f"{len(meta.styles)}: {', '.join(meta.styles)} (--style NAME, A:0.7,B:0.3 or A..B)"),
               ("default style", meta.style_by_default)] if meta.styles else []),
            *([("style images", ", ".join(meta.style_images) or "?")] if meta.styles else
              [("style image", meta.style_image or "?"), ("style image sha256", meta.style_sha256 or "?")]),
            ("network", f"{meta.arch} {meta.network}, {parameters:,} parameters"),
            ("steps trained", meta.steps), ("training crop", f"{meta.image_size} px" if meta.image_size else "?"),
            ("loss", f"{loss.get('vgg')} ({loss.get('vgg_weights')} weights), "
                     + ", ".join(filter(None, (t.summary(loss) for t in all_terms() if t.name != "temporal")))),
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
    from fastnst.inference.fitting import FitOptions

    fit = FitOptions(vgg_weights=args.vgg_weights, device=args.device,
                     **({"steps": args.fit_steps} if args.fit_steps is not None else {}))
    serve(args.models, args.host, args.port, args.device, args.engine, fit)
    return 0


def cmd_stylize(args: argparse.Namespace) -> int:
    from fastnst.inference.batch import plan, run_jobs
    from fastnst.inference.shard import local_rank, parse_shard, remove_partials
    from fastnst.inference.stylizer import StylizeOptions, Stylizer
    from fastnst.inference.video import VideoOptions

    # Every option is checked here, before a model is loaded or a file is read.
    options = StylizeOptions(max_size=args.max_size, scale=args.scale, strength=args.strength,
                             preserve_color=args.preserve_color, tile=args.tile, overlap=args.overlap,
                             style=args.style)
    video_options = VideoOptions(codec=args.codec, crf=args.crf, batch_size=max(args.batch_size, 1),
                                 temporal_blend=args.temporal_blend)
    shard = parse_shard(args.shard) if args.shard is not None else None  # an empty $SHARD fails here too
    if args.batch_size < 1:
        raise FastNSTError("batch size must be at least 1", param="batch_size")
    if args.max_pixels < 0:
        raise FastNSTError(f"max_pixels must be 0 (no limit) or more, got {args.max_pixels}", param="max_pixels")
    if not 1 <= args.quality <= 100:
        raise FastNSTError(f"quality must be from 1 to 100, got {args.quality}", param="quality")
    local = local_rank() if shard is not None else None
    if local is not None and args.device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():  # one process per GPU: each takes its own
            torch.cuda.set_device(local % torch.cuda.device_count())
    model, style = args.model, args.style
    if args.style_image is not None:
        if args.style is not None:
            raise FastNSTError("--style-image makes a style of its own; --style does not go with it", param="style")
        dry = plan(args.inputs, args.output, args.recursive, "style", args.overwrite,
                   args.skip_existing or shard is not None)
        if not dry.jobs:  # nothing to stylize: say so before minutes of fitting
            raise dry.failures[0] if dry.failures else FastNSTError("no inputs")
        model, fitted = fit_painting(args, args.style_image, args.model)
        style = style or fitted
        options = dataclasses.replace(options, style=style)
    elif model is None:
        raise FastNSTError("name a model (--model NAME or FILE; `fastnst models` lists the starters) or a painting "
                           "(--style-image)", param="model")
    stylizer = Stylizer.from_file(model, args.device, args.precision, compile=args.compile, engine=args.engine)
    if stylizer.device.type == "cuda":
        import torch

        torch.backends.cudnn.benchmark = True  # this process stylizes many frames of one size: autotune once
    planned = plan(args.inputs, args.output, args.recursive, stylizer.style_label(style), args.overwrite,
                   args.skip_existing or shard is not None)
    for note in planned.notes:
        print(f"note: {note}", file=sys.stderr)
    jobs, skipped = planned.jobs, planned.skipped
    if shard is not None:
        jobs = [j for j in jobs if shard.owns(j.key)]
        skipped = [j for j in skipped if shard.owns(j.key)]
        for job in jobs:
            remove_partials(job.target)  # a killed earlier run of this shard
    failures = planned.failures + run_jobs(stylizer, jobs, options, video_options, quality=args.quality,
                                           max_pixels=args.max_pixels or None, batch_size=args.batch_size,
                                           done=_report)
    total = len(jobs) + len(planned.failures)
    for err in failures:
        print(f"error: {describe(err)}", file=sys.stderr)
    if failures and total > 1:
        print(f"{len(failures)} of {total} inputs failed", file=sys.stderr)
    if shard is not None or args.skip_existing:
        where = f"shard {shard}: " if shard is not None else ""
        print(f"{where}{total - len(failures)} done, {len(skipped)} skipped (output exists), {len(failures)} failed",
              file=sys.stderr)
    return 1 if failures else 0


def _report(path: Path) -> None:
    print(path, flush=True)


def cmd_add_style(args: argparse.Namespace) -> int:
    from fastnst.core.images import atomic_path
    from fastnst.core.modelfile import is_starter, plain_name
    from fastnst.inference.fitting import style_name

    if args.name is not None and not plain_name(args.name):
        raise FastNSTError(f"style name {args.name[:80]!r} is not a plain name (letters, digits, space, _ . + -, at "
                           "most 64 characters, no '..')", param="name")
    target = args.output or Path(f"{args.name or style_name(args.painting)}.safetensors")
    if target.suffix != ".safetensors":
        raise FastNSTError(f"{target}: a model file's name ends in .safetensors", param="output")
    if len(target.name.encode()) > 255:
        raise FastNSTError(f"the file name {target.name[:40]}… is too long for a file system; choose a shorter "
                           f"{'--name' if args.output is None else 'name'}", param="output")
    if target.is_dir():
        raise FastNSTError(f"{target} is a folder; name the model file to write", param="output")
    if not target.parent.is_dir():
        raise FastNSTError(f"{target.parent} is not a folder; create it first", param="output")
    if target.exists() and any(target.resolve() == Path(p).expanduser().resolve() for p in (args.painting, args.to)
                               if p is not None):
        raise FastNSTError(f"{target} is this command's input; write the new model elsewhere", param="output")
    if target.exists() and not args.overwrite:
        raise FastNSTError(f"{target} exists; not overwriting it (--overwrite replaces it)", param="output")
    if target.exists() and is_starter(target):
        raise FastNSTError(f"{target} is a starter model; write the new model elsewhere", param="output")
    if args.to is not None:
        from fastnst.core.modelfile import read_metadata, resolve_model

        read_metadata(resolve_model(args.to))  # not a model: one line before the painting is read
    path, name = fit_painting(args, args.painting, args.to, args.name)
    with atomic_path(target) as tmp:
        shutil.copyfile(path, tmp)
    print(f"{target}  (style {name!r}: fastnst stylize photo.jpg --model {target} --style {name})", flush=True)
    return 0


def fit_painting(args: argparse.Namespace, painting: Path, base: str | None, name: str | None = None
                 ) -> tuple[Path, str]:
    """The model of ``base`` + ``painting`` (fitted once, then cached) and the new style's name, with a
    progress bar on stderr while it fits."""
    from tqdm import tqdm

    from fastnst.core.modelfile import read_metadata
    from fastnst.inference.fitting import DEFAULT_BASE, FitOptions, cached_style, read_painting

    options = FitOptions(steps=args.fit_steps, lr=args.fit_lr, photos=args.fit_photos, vgg_weights=args.vgg_weights,
                         device=args.device, content_weight=args.fit_content_weight)
    image, notes = read_painting(painting, options.style_size)  # before the base loads: a bad painting is fast
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    bars: list[tqdm] = []  # made at the first step: a base that fails to load shows no bar

    def progress(p, _painter) -> None:
        if not bars:
            bars.append(tqdm(total=p.steps, unit="step", desc=f"fitting {painting.name}", file=sys.stderr,
                             leave=False))
        bars[0].update(p.step - bars[0].n)
        bars[0].set_postfix(loss=f"{p.loss:.3f}")

    try:
        path, cached = cached_style(painting, base or DEFAULT_BASE, options, name, on_progress=progress, image=image,
                                    on_wait=lambda: print(f"note: waiting for another fit of {painting.name} to "
                                                          "finish (it will be reused)", file=sys.stderr),
                                    on_note=lambda note: print(f"note: {note}", file=sys.stderr))
    finally:
        for bar in bars:
            bar.close()
    meta = read_metadata(path)
    if not cached:
        seconds = bars[0].format_dict["elapsed"] if bars else 0
        print(f"note: fitted {painting.name} in {seconds:.0f} s; cached as {path}", file=sys.stderr)
    return path, meta.styles[-1]
