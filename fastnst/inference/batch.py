"""A batch of inputs to stylize: which files an INPUT names, where each output goes, and the run itself.

Plain functions (no argparse), so the command line, the web app and tests share them. Errors that
concern one input are collected, not raised: one unreadable photo must not stop a folder.
"""

from __future__ import annotations

import dataclasses
import glob
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from fastnst.core.errors import FastNSTError
from fastnst.core.images import IMAGE_EXTENSIONS, find_images

if TYPE_CHECKING:  # the heavy modules are imported by the functions that need them
    from fastnst.inference.stylizer import StylizeOptions, Stylizer
    from fastnst.inference.video import VideoOptions

STDIO = Path("-")  # stdin as an input, stdout as an output


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path
    key: str = ""  # the path inside the folder it was found in: what --shard splits on


@dataclass
class Plan:
    jobs: list[Job]
    failures: list[FastNSTError]
    skipped: list[Job]  # outputs that exist already (skip_existing)
    notes: list[str] = field(default_factory=list)  # what was left out on purpose, for the user


def expand_input(raw: str, recursive: bool) -> list[Path]:
    """One INPUT argument (file, folder, glob or ``-``) -> media files. Raises when it names nothing usable."""
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


def is_earlier_output(path: Path, style: str) -> bool:
    """``x_<style>.jpg`` beside ``x.jpg``: what an earlier run over this folder wrote."""
    suffix = f"_{style}"
    return path.stem.endswith(suffix) and path.with_name(path.stem[: -len(suffix)] + path.suffix).exists()


def unique_name(stem: str, taken: Callable[[str], bool], ext: str = "") -> str:
    """``<stem><ext>``, or ``<stem>_2<ext>``, ``_3``, ... until ``taken`` says no (outputs, the app's model ids)."""
    candidate, n = stem + ext, 1
    while taken(candidate):
        n += 1
        candidate = f"{stem}_{n}{ext}"
    return candidate


def plan(inputs: list[str], output: Path | None, recursive: bool, style: str,
         overwrite: bool = False, skip_existing: bool = False) -> Plan:
    """Map inputs to outputs. Next to the input as <stem>_<style><ext> by default; into ``output``
    (a file for one input, ``-`` for stdout, else a folder that mirrors input folders).

    Never overwrites an input; never an existing file unless ``overwrite`` (``skip_existing``: an
    existing output counts as done); two inputs never share an output (the later one gets ``_2``);
    a folder's earlier outputs are not stylized again."""
    jobs, failures, skipped, notes = [], [], [], []
    expanded: list[tuple[Path, Path | None]] = []  # (file, the folder it was found in)
    for raw in inputs:
        try:
            base = Path(raw).expanduser()
            found = expand_input(raw, recursive)
            if base.is_dir():
                kept = [f for f in found if not is_earlier_output(f, style)]
                if len(kept) < len(found):
                    notes.append(f"{base}: skipped {len(found) - len(kept)} earlier output(s) (*_{style}.*)")
                found = kept
            expanded += [(f, base if base.is_dir() else None) for f in found]
        except FastNSTError as err:
            failures.append(err)
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
        target = target.parent / unique_name(target.stem, partial(_taken, target.parent, taken), target.suffix)
        key = (src.relative_to(folder) if folder else Path(src.name)).as_posix()
        if target.resolve() in sources:
            failures.append(FastNSTError(f"{src}: its output {target} is one of the inputs; not overwriting it"))
        elif target.exists() and skip_existing and not overwrite:
            taken.add(target.resolve())
            skipped.append(Job(src, target, key))
        elif target.exists() and not overwrite:
            failures.append(FastNSTError(f"{target} exists; not overwriting it (--overwrite replaces existing "
                                         "outputs, --skip-existing skips them)"))
        else:
            taken.add(target.resolve())
            jobs.append(Job(src, target, key))
    return Plan(jobs, failures, skipped, notes)


def _taken(folder: Path, taken: set[Path], name: str) -> bool:
    return (folder / name).resolve() in taken


def is_video(job: Job) -> bool:
    from fastnst.inference.video import VIDEO_EXTENSIONS

    return job.source.suffix.lower() in VIDEO_EXTENSIONS


def run_jobs(stylizer: Stylizer, jobs: list[Job], options: StylizeOptions, video: VideoOptions, *,
             quality: int = 95, max_pixels: int | None = None, batch_size: int = 1,
             done: Callable[[Path], None] = lambda path: None) -> list[FastNSTError]:
    """Stylize every job (images first, ``batch_size`` per forward pass, then videos); ``done`` hears each
    written output. Returns the failures, one per input that could not be done."""
    from tqdm import tqdm

    from fastnst.inference.video import stylize_video

    images = [j for j in jobs if not is_video(j)]
    videos = [j for j in jobs if is_video(j)]
    if images and options.style and ".." in options.style:
        raise FastNSTError(f"a morph ({options.style}) moves over a video's frames; {len(images)} of the inputs "
                           "are images: give one style or a blend for them", param="style")
    failures: list[FastNSTError] = []
    bar = tqdm(total=len(images), unit="image", disable=len(images) < 2, file=sys.stderr)
    for batch in _batches(images, batch_size):
        failures += _stylize_images(stylizer, batch, options, quality, max_pixels, done)
        bar.update(len(batch))
    bar.close()
    # Batches of frames pay on a GPU; on a CPU one frame at a time is faster (scripts/bench: 0.76x at 4).
    frames = batch_size if batch_size > 1 else (4 if stylizer.device.type == "cuda" else 1)
    for job in videos:
        try:
            if job.target == STDIO:
                raise FastNSTError(f"{job.source}: a video cannot be written to stdout; name an output file")
            job.target.parent.mkdir(parents=True, exist_ok=True)
            stylize_video(stylizer, job.source, job.target, options, dataclasses.replace(video, batch_size=frames))
            done(job.target)
        except FastNSTError as err:
            failures.append(err)
    return failures


def _batches(jobs: list[Job], size: int) -> Iterator[list[Job]]:
    for start in range(0, len(jobs), size):
        yield jobs[start:start + size]


def _stylize_images(stylizer: Stylizer, batch: list[Job], options: StylizeOptions, quality: int,
                    max_pixels: int | None, done: Callable[[Path], None]) -> list[FastNSTError]:
    from fastnst.core.images import decode_image, open_image, save_image

    failures, loaded = [], []
    for job in batch:
        try:
            if job.source == STDIO:
                loaded.append((job, decode_image(sys.stdin.buffer.read(), "stdin", max_pixels, options.max_size)))
            else:
                loaded.append((job, open_image(job.source, max_pixels, options.max_size)))
        except FastNSTError as err:
            failures.append(err)
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
                done(job.target)
        except FastNSTError as err:
            failures.append(err)
        except OSError as err:
            failures.append(FastNSTError(f"cannot write {job.target}: {err}"))
    return failures
