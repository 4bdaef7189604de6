"""The ``fastnst`` commands: each checks its options, then calls the library (fastnst.inference, fastnst.app)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fastnst.core.errors import FastNSTError


def describe(err: FastNSTError) -> str:
    """The library's message, with the command-line flag for the argument it names."""
    flag = f"--{err.param.replace('_', '-')}" if err.param else None
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
    stylizer = Stylizer.from_file(args.model, args.device, args.precision, compile=args.compile, engine=args.engine)
    if stylizer.device.type == "cuda":
        import torch

        torch.backends.cudnn.benchmark = True  # this process stylizes many frames of one size: autotune once
    planned = plan(args.inputs, args.output, args.recursive, stylizer.style_label(args.style), args.overwrite,
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
