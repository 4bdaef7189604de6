"""Video: streaming decode -> stylize in batches -> encode, with PyAV.

Decoding, stylizing and encoding run at once, each in its own thread, and memory stays flat in clip
length (a few batches of frames in flight). Frame timestamps are copied, so frame count, frame rate
(variable too) and duration are kept; rotation metadata is carried over; audio is copied without
re-encoding where the output container can hold it, re-encoded otherwise.
The output is written under a temporary name and renamed only when complete.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fastnst.core.blend import Morph
from fastnst.core.errors import FastNSTError
from fastnst.core.images import atomic_path, fit_long_side
from fastnst.inference.stylizer import StylizeOptions, Stylizer

log = logging.getLogger(__name__)

DEFAULT_CODECS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264",
                  ".webm": "libvpx-vp9", ".avi": "mpeg4", ".gif": "gif"}
VIDEO_EXTENSIONS = frozenset(DEFAULT_CODECS)  # what `fastnst stylize` treats as video
FALLBACK_AUDIO = {".webm": "libopus", ".mkv": "aac", ".gif": None}


@dataclass(frozen=True)
class VideoOptions:
    """``codec``/``crf``: encoder and quality (None: per-container defaults, CRF 18 for x264).
    ``batch_size``: frames per forward pass. ``temporal_blend``: 0..0.9, each output frame mixed
    with the previous output (an inference-time flicker filter for networks trained without the
    temporal loss; it trails on fast motion)."""

    codec: str | None = None
    crf: int | None = None
    batch_size: int = 4
    temporal_blend: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.temporal_blend <= 0.9:  # also false for NaN
            raise FastNSTError(f"temporal_blend must be between 0 and 0.9, got {self.temporal_blend}",
                               param="temporal_blend")
        if self.crf is not None and not 0 <= self.crf <= 63:
            raise FastNSTError(f"crf must be from 0 to 63, got {self.crf}", param="crf")
        if self.batch_size < 1:
            raise FastNSTError(f"batch_size must be at least 1, got {self.batch_size}", param="batch_size")


@dataclass(frozen=True)
class _Job:
    """One transcode: what to stylize with, from which input container into which output."""

    stylizer: Stylizer
    src: Path
    ext: str
    codec: str
    inp: av.container.InputContainer
    out: av.container.OutputContainer
    options: StylizeOptions
    video: VideoOptions
    progress: bool | Callable[[int, int], None]


@dataclass
class VideoReport:
    frames: int
    expected_frames: int
    audio: str  # "copied", "re-encoded" or "none"
    size: tuple[int, int]

    @property
    def warning(self) -> str | None:
        """What a user should know about a clip that was only partly read, or None."""
        lost = self.expected_frames - self.frames
        if lost <= 0:
            return None
        return f"{lost} of {self.expected_frames} frames could not be decoded (truncated?); stylized the rest"


def stylize_video(stylizer: Stylizer, src: Path, dst: Path, options: StylizeOptions = StylizeOptions(),
                  video: VideoOptions = VideoOptions(),
                  progress: bool | Callable[[int, int], None] = True) -> VideoReport:
    """Stylize every frame of ``src`` into ``dst``; the container follows dst's extension.
    ``progress``: a bar on stderr, or a function called after each frame with (frames so far, frames
    expected or 0); an exception it raises stops the run, and nothing is left at ``dst``."""
    src_in = _open_input(src)
    try:
        with atomic_path(dst) as tmp:
            report = _transcode(stylizer, src_in, src, tmp, dst.suffix.lower(), options, video, progress)
    except OSError as err:  # av.error.OSError too: a full disk, a vanished folder (decode errors are handled)
        raise FastNSTError(f"cannot write {dst}: {err.strerror or err}; nothing was left behind") from None
    finally:
        src_in.close()
    if report.warning:
        log.warning("%s: %s", src, report.warning)
    return report


def _open_input(src: Path) -> av.container.InputContainer:
    if not src.is_file():
        raise FastNSTError(f"no such file: {src}")
    if src.stat().st_size == 0:
        raise FastNSTError(f"{src} is empty (0 bytes)")
    try:
        container = av.open(str(src))
    except av.error.EOFError:
        raise FastNSTError(f"{src} holds no frames (it ends before the first one)") from None
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise FastNSTError(f"{src} is not a video FFmpeg can read ({err.__class__.__name__})") from None
    if not container.streams.video:
        container.close()
        raise FastNSTError(f"{src} has no video stream")
    return container


def _transcode(stylizer: Stylizer, inp: av.container.InputContainer, src: Path, tmp: Path, ext: str,
               options: StylizeOptions, video: VideoOptions,
               progress: bool | Callable[[int, int], None]) -> VideoReport:
    inp.streams.video[0].thread_type = "AUTO"
    codec = video.codec or DEFAULT_CODECS.get(ext)
    if codec is None:
        raise FastNSTError(f"no default video codec for {ext!r} outputs; name one", param="codec")
    try:
        out = av.open(str(tmp), "w", format=_muxer(ext))
    except (av.error.FFmpegError, ValueError) as err:
        raise FastNSTError(f"cannot write a {ext} video ({err})") from None
    try:
        return _pipeline(_Job(stylizer, src, ext, codec, inp, out, options, video, progress))
    finally:
        out.close()


def _muxer(ext: str) -> str | None:
    return {".m4v": "mp4", ".mkv": "matroska"}.get(ext)


def _pipeline(job: _Job) -> VideoReport:
    inp, out, codec, ext, src, video = job.inp, job.out, job.codec, job.ext, job.src, job.video
    in_v = inp.streams.video[0]
    in_a = inp.streams.audio[0] if inp.streams.audio else None
    supported = getattr(out, "supported_codecs", None)
    if codec not in av.codecs_available:
        raise FastNSTError(f"video codec {codec!r} is not available in this FFmpeg build")
    if supported is not None and codec not in supported:
        raise FastNSTError(f"a {ext} file cannot hold {codec!r} video; choose another codec or extension",
                           param="codec")
    expected = _expected_frames(inp, in_v)
    write = _Writer()
    state = _EncoderState(job.stylizer, in_v, out, codec, job.options, video, expected, write)
    audio_out, audio_mode = _audio_stream(in_a, out, ext)
    report = job.progress if callable(job.progress) else None
    bar = tqdm(total=expected or None, unit="frame", disable=job.progress is not True, file=sys.stderr,
               desc=src.name)
    streams = [s for s in (in_v, in_a if audio_out is not None else None) if s is not None]
    decoded = 0
    pending_audio: list[av.Packet] = []  # the header is written at the first mux: video stream first
    # The bar closes however the loop ends (an error, Ctrl-C): the message then starts on a line of its own, and
    # no stale bar is redrawn after it.
    with write, _Prefetch(_read(inp, streams, src), depth=2 * video.batch_size) as items, bar:
        for kind, item in items:
            if kind == "audio":
                pending_audio.append(item)
                if state.stream is not None:
                    for p in pending_audio:
                        write(partial(_write_audio, p, audio_out, audio_mode, out))
                    pending_audio.clear()
                continue
            state.push(item)
            decoded += 1
            bar.update(1)
            if report is not None:
                report(decoded, expected)
        bar.close()
        if decoded == 0:
            raise FastNSTError(f"{src}: no video frame could be decoded")
        state.flush()
        for p in pending_audio:
            write(partial(_write_audio, p, audio_out, audio_mode, out))
        if audio_mode == "re-encoded":
            write(partial(_flush_encoder, audio_out, out))
    return VideoReport(decoded, max(expected, decoded) if expected else decoded, audio_mode, state.size)


def _expected_frames(inp: av.container.InputContainer, in_v: av.video.stream.VideoStream) -> int:
    """The frame count the file declares (mp4 does; for mkv and others, duration x frame rate), 0 if unknown."""
    if in_v.frames:
        return in_v.frames
    rate = in_v.average_rate or in_v.guessed_rate
    if in_v.duration and in_v.time_base and rate:
        return round(float(in_v.duration * in_v.time_base * rate))
    if inp.duration and rate:
        return round(inp.duration / av.time_base * float(rate))
    return 0


def _read(inp: av.container.InputContainer, streams: list[av.stream.Stream],
          src: Path) -> Iterator[tuple[str, object]]:
    """("frame", VideoFrame) and ("audio", Packet) in file order. Only reading and decoding may
    fail softly (a truncated file ends the clip early); errors elsewhere propagate."""
    packets = inp.demux(*streams)
    while True:
        try:
            packet = next(packets)
            frames = packet.decode() if packet.stream.type == "video" else None
        except StopIteration:
            return
        except av.error.FFmpegError as err:
            log.warning("%s: decoding stopped early (%s)", src, err)
            return
        if frames is None:
            yield "audio", packet
        else:
            yield from (("frame", f) for f in frames)


class _Prefetch:
    """Runs an iterator in a background thread, ``depth`` items ahead, so decoding overlaps with
    stylizing and encoding (FFmpeg releases the GIL while it decodes). The thread is always joined
    before the block ends, so the input container is never closed under it."""

    _END = object()

    def __init__(self, iterator: Iterator[tuple[str, object]], depth: int) -> None:
        self.iterator, self.queue = iterator, queue.Queue(maxsize=max(1, depth))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._work, daemon=True)

    def _work(self) -> None:
        try:
            for item in self.iterator:
                while not self.stop.is_set():
                    try:
                        self.queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self.stop.is_set():
                    return
            self.queue.put(self._END)
        except BaseException as err:  # handed to the consumer, raised there
            self.queue.put(err)

    def __enter__(self) -> Iterator[tuple[str, object]]:
        self.thread.start()
        return self._items()

    def _items(self) -> Iterator[tuple[str, object]]:
        while True:
            item = self.queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        while self.thread.is_alive():
            try:
                self.queue.get(timeout=0.1)
            except queue.Empty:
                pass
        self.thread.join()


class _Writer:
    """Encodes and muxes in a background thread, in the order given, so that the encoder works while the
    network stylizes the next batch (the x264 encode of a 640x640 clip was an eighth of its run, all of it
    waited for; docs/speed.md). Every write to the output container goes through it: FFmpeg's containers
    are not thread-safe. An error in the thread is raised in the caller, at its next write or at the end;
    leaving the block on an error drops the writes still queued."""

    def __init__(self, depth: int = 2) -> None:
        self.queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.cancelled = threading.Event()
        self.thread = threading.Thread(target=self._work, daemon=True)

    def _work(self) -> None:
        while (job := self.queue.get()) is not None:
            if self.error is None and not self.cancelled.is_set():
                try:
                    job()
                except BaseException as err:  # raised in the caller
                    self.error = err

    def __call__(self, job: Callable[[], None]) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(job)

    def __enter__(self) -> _Writer:
        self.thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is not None:
            self.cancelled.set()
        self.queue.put(None)
        self.thread.join()
        if exc_type is None and self.error is not None:
            raise self.error


def _flush_encoder(stream: av.stream.Stream, out: av.container.OutputContainer) -> None:
    for packet in stream.encode(None):
        out.mux(packet)


def _audio_stream(in_a: av.audio.stream.AudioStream | None, out: av.container.OutputContainer,
                  ext: str) -> tuple[av.stream.Stream | None, str]:
    if in_a is None:
        return None, "none"
    supported = getattr(out, "supported_codecs", None)
    if supported is None or in_a.codec_context.name in supported:
        stream = out.add_stream_from_template(in_a)
        stream.time_base = in_a.time_base  # unset, the muxer divides by zero
        return stream, "copied"
    fallback = FALLBACK_AUDIO.get(ext, "aac")
    if fallback is None:
        log.warning("%s files hold no audio: the audio track is dropped", ext)
        return None, "none"
    # Opus only takes 48 kHz; PyAV resamples the decoded frames to what the encoder is given.
    rate = 48000 if fallback == "libopus" else in_a.codec_context.sample_rate or 48000
    stream = out.add_stream(fallback, rate=rate)
    stream.layout = in_a.codec_context.layout
    return stream, "re-encoded"


def _write_audio(packet: av.Packet, stream: av.stream.Stream, mode: str, out: av.container.OutputContainer) -> None:
    if mode == "copied":
        if packet.dts is None:  # the demuxer's final flush packet
            return
        packet.stream = stream
        out.mux(packet)
        return
    for frame in packet.decode():
        frame.pts = None  # let the encoder count samples; the input's frame sizes may differ
        for pkt in stream.encode(frame):
            out.mux(pkt)


class _EncoderState:
    """Buffers decoded frames into batches, stylizes them and encodes the results in order."""

    def __init__(self, stylizer: Stylizer, in_v: av.video.stream.VideoStream, out: av.container.OutputContainer,
                 codec: str, options: StylizeOptions, video: VideoOptions, expected_frames: int,
                 write: Callable[[Callable[[], None]], None]) -> None:
        self.stylizer, self.in_v, self.out, self.codec, self.write = stylizer, in_v, out, codec, write
        self.options, self.video = options, video
        self.style = stylizer.style_weights(options.style)
        if isinstance(self.style, Morph) and expected_frames <= 0:
            raise FastNSTError("this video does not declare its length, so a morph (a..b) cannot be timed; "
                               "give one style or a blend", param="style")
        self.expected_frames = expected_frames
        self.frames: list[av.VideoFrame] = []
        self.stream: av.video.stream.VideoStream | None = None
        self.size = (0, 0)
        self.previous: torch.Tensor | None = None
        self.count = 0

    def push(self, frame: av.VideoFrame) -> None:
        self.frames.append(frame)
        if len(self.frames) >= self.video.batch_size:
            self._run()

    def flush(self) -> None:
        if self.frames:
            self._run()
        if self.stream is not None:
            self.write(partial(_flush_encoder, self.stream, self.out))

    def _open_stream(self, frame: av.VideoFrame, height: int, width: int) -> None:
        in_v = self.in_v
        rate = in_v.average_rate or in_v.guessed_rate or Fraction(25)
        stream = self.out.add_stream(self.codec, rate=rate)
        pix_fmt = "pal8" if self.codec == "gif" else "yuv420p"
        if pix_fmt == "yuv420p" and (height % 2 or width % 2):
            log.warning("yuv420p needs even sizes: padding %dx%d to %dx%d by repeating the last row/column",
                        width, height, width + width % 2, height + height % 2)
            height, width = height + height % 2, width + width % 2
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        # Copy timestamps exactly: the encoder works in the input's time base, not 1/rate (which would
        # snap a variable frame rate onto a grid of the average rate and collide timestamps).
        stream.time_base = in_v.time_base
        stream.codec_context.time_base = in_v.time_base
        if self.codec in ("libx264", "libx265"):
            stream.options = {"crf": str(18 if self.video.crf is None else self.video.crf), "preset": "medium"}
        elif self.video.crf is not None:
            stream.options = {"crf": str(self.video.crf), "b": "0"}
        rotation = getattr(frame, "rotation", 0) or 0
        if rotation and hasattr(stream, "set_display_rotation"):
            stream.set_display_rotation(rotation)
        self.stream, self.size = stream, (width, height)

    def _run(self) -> None:
        frames, self.frames = self.frames, []
        x = torch.from_numpy(np.stack([f.to_ndarray(format="rgb24") for f in frames]))
        x = x.permute(0, 3, 1, 2).float().div_(255)
        if self.options.max_size:
            x = fit_long_side(x, self.options.max_size, upscale=False)
        if self.stylizer.device.type == "cuda":
            x = x.pin_memory()  # so the copy to the GPU can overlap
        y = self.stylizer.stylize_tensor(x, self.options, self._style(len(frames)))
        if self.stream is None:
            self._open_stream(frames[0], *y.shape[-2:])
        y = self._blend(y)
        width, height = self.size
        if (y.shape[-1], y.shape[-2]) != (width, height):
            y = F.pad(y, (0, width - y.shape[-1], 0, height - y.shape[-2]), mode="replicate")
        arr = y.mul(255).round_().clamp_(0, 255).byte().permute(0, 2, 3, 1).contiguous().numpy()
        self.write(partial(self._encode, frames, arr, self.count))
        self.count += len(frames)

    def _encode(self, frames: list[av.VideoFrame], arr: np.ndarray, first: int) -> None:
        """Runs in the writer thread: ``arr`` (N, H, W, 3) uint8, timed as the decoded ``frames``."""
        for i, (src_frame, rgb) in enumerate(zip(frames, arr, strict=True)):
            frame = _gif_frame(rgb) if self.codec == "gif" else av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = src_frame.pts if src_frame.pts is not None else first + i
            frame.time_base = self.in_v.time_base
            for packet in self.stream.encode(frame):
                # GIF's muxer times each frame by the next one's timestamp, and the last by its packet's
                # duration, which its encoder leaves unset (the last frame took the one before's delay).
                if self.codec == "gif" and not packet.duration and getattr(src_frame, "duration", None):
                    packet.duration = src_frame.duration
                self.out.mux(packet)

    def _style(self, n: int) -> torch.Tensor | None:
        """Blend weights for the next ``n`` frames: fixed, or for a morph moving from its first mix at
        the first frame to its last at the last (frames past the declared count keep the last)."""
        if not isinstance(self.style, Morph):
            return self.style
        last = max(1, self.expected_frames - 1)
        return torch.stack([self.style.at((self.count + i) / last) for i in range(n)])

    def _blend(self, y: torch.Tensor) -> torch.Tensor:
        a = self.video.temporal_blend
        if a <= 0:
            return y
        out = []
        for frame in y:
            prev = self.previous
            self.previous = frame if prev is None else torch.lerp(frame, prev, a)
            out.append(self.previous)
        return torch.stack(out)


def _gif_frame(rgb: np.ndarray) -> av.VideoFrame:
    """A pal8 frame: swscale cannot quantise to a palette; Pillow's octree quantiser with dithering can."""
    from PIL import Image

    image = Image.fromarray(rgb).quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.FLOYDSTEINBERG)
    palette = np.zeros((256, 4), np.uint8)
    colors = np.asarray(image.getpalette()[: 256 * 3], np.uint8).reshape(-1, 3)
    palette[: len(colors), 1:] = colors  # PyAV takes palette rows as A, R, G, B (checked by the GIF test)
    palette[:, 0] = 255
    return av.VideoFrame.from_ndarray((np.asarray(image), palette), format="pal8")
