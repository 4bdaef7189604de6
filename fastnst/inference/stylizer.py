"""Inference: ``Stylizer.from_file(path).stylize(pil_image) -> PIL.Image``.

No Lightning or Hydra on this path: the CLI must start fast.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from fastnst.core.blend import Morph, StyleSpec, mix_label, parse_style
from fastnst.core.color import blend, preserve_color
from fastnst.core.device import resolve_device, resolve_dtype
from fastnst.core.errors import FastNSTError
from fastnst.core.images import fit_long_side, resize, split_alpha, to_pil, to_tensor
from fastnst.core.modelfile import ModelMeta, load_network, resolve_model
from fastnst.core.networks import StyleNetwork
from fastnst.inference.engines import ENGINES, MIN_SIZE, OpenVINOEngine, openvino_available
from fastnst.inference.tiling import fixed_norm_stats, measure_norm_stats, run_tiled

log = logging.getLogger(__name__)

# Peak bytes per pixel of an untiled fp32 run of `johnson`, measured as the peak RSS of
# `fastnst stylize` on a 4000x3000 photo on the CPU (14.5 GB / 12 Mpx, /usr/bin/time -v): activations
# of 32-128 channels, conv workspace, and the image in and out. Scaled by width and dtype.
BYTES_PER_PIXEL_JOHNSON = 1200
STATS_SIZE = 1024  # long side of the pass that measures instance-norm statistics for tiling


def available_memory(device: torch.device) -> int:
    """Bytes free for activations on ``device`` (a conservative guess where unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 4 << 30


@dataclass(frozen=True)
class StylizeOptions:
    """How to stylize. ``max_size``: long side of the output (downscale only). ``scale``: run the
    network at this factor of the output size and resize back (< 1: larger strokes).
    ``strength``: 0 returns the input, 1 the full stylization. ``tile``: tile side in px (None: tile
    automatically only when the image would not fit in memory; 0: never tile). ``style``: for a
    multi-style model, a style name, a blend (``a:0.7,b:0.3`` or {name: weight}), or for videos a
    morph ``a..b`` (``fastnst.core.blend``); None: the model's default style (``ModelMeta.default_style``:
    the painting ``fastnst add-style`` added), else its first."""

    max_size: int | None = None
    scale: float = 1.0
    strength: float = 1.0
    preserve_color: bool = False
    tile: int | None = None
    overlap: int = 64
    style: StyleSpec | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.strength <= 1:  # also false for NaN
            raise FastNSTError(f"strength must be between 0 and 1, got {self.strength}", param="strength")
        if not 0 < self.scale < float("inf"):  # also refuses NaN
            raise FastNSTError(f"scale must be a positive number, got {self.scale}", param="scale")
        if self.overlap < 0:
            raise FastNSTError(f"overlap must be at least 0, got {self.overlap}", param="overlap")
        if self.max_size is not None and self.max_size < 8:
            raise FastNSTError(f"max_size must be at least 8 px, got {self.max_size}", param="max_size")
        if self.tile and (self.tile < 32 or self.overlap < 0 or self.overlap >= self.tile):
            raise FastNSTError("tile must be at least 32 px and overlap between 0 and the tile size", param="tile")


class Stylizer:
    """A trained network ready to stylize: loaded once, in eval mode, on its device."""

    def __init__(self, network: StyleNetwork, metadata: ModelMeta | None = None,
                 device: str = "auto", precision: str = "auto", channels_last: bool = False,
                 compile: bool = False, engine: str | None = None, engine_cache: Path | None = None,
                 streams: int = 1) -> None:
        self.device = resolve_device(device)
        int8 = precision == "int8"  # a quantized graph: only the OpenVINO engine has one
        self.dtype = torch.float32 if int8 else resolve_dtype(precision, self.device)
        # FASTNST_ENGINE sets the default for every entry point (the test suite runs PyTorch by it).
        self.openvino = self._openvino(network, engine or os.environ.get("FASTNST_ENGINE", "auto"),
                                       compile or channels_last, engine_cache, streams, int8)
        if int8 and self.openvino is None:
            raise FastNSTError("precision int8 runs on the openvino engine, on the CPU (--engine openvino)",
                               param="precision")
        if self.openvino is not None:
            self.dtype = torch.float32  # the PyTorch copy only measures tiling statistics and runs tiny images
        self.engine = f"openvino {self.openvino.precision}" if self.openvino else f"torch {str(self.dtype)[6:]}"
        self.channels_last = channels_last
        self.network = network.eval().requires_grad_(False).to(self.device, self.dtype)
        if channels_last:
            self.network.to(memory_format=torch.channels_last)
        # Compiled once; height/width vary between images, so shapes are marked dynamic after a change.
        self._forward = torch.compile(self.network, dynamic=None) if compile else self.network
        self.metadata = metadata or ModelMeta()
        self.style_name = self.metadata.style_name
        self.style_names = self.metadata.style_names if network.num_styles > 1 else [self.style_name]

    def _openvino(self, network: StyleNetwork, engine: str, torch_options: bool,
                  cache: Path | None, streams: int, int8: bool) -> OpenVINOEngine | None:
        """The OpenVINO engine when ``engine`` asks for it (``auto``: on the CPU where it is installed and
        works, unless a PyTorch-only option is set); None for PyTorch."""
        if engine not in ENGINES:
            raise FastNSTError(f"unknown engine {engine!r}; choose {', '.join(ENGINES)}", param="engine")
        if engine == "torch" or (engine == "auto" and (self.device.type != "cpu" or torch_options)):
            return None
        if self.device.type != "cpu":
            raise FastNSTError(f"the openvino engine runs on the CPU, not {self.device.type}; use --device cpu",
                               param="engine")
        if engine == "openvino" and torch_options:
            raise FastNSTError("--compile and channels_last are PyTorch options; use --engine torch with them",
                               param="engine")
        precision = "int8" if int8 else "bf16" if self.dtype == torch.bfloat16 else "fp32"
        if engine == "auto" and not openvino_available():
            return None
        try:
            return OpenVINOEngine(network.float(), precision, cache=cache, streams=streams)
        except FastNSTError as err:
            if engine == "openvino" or int8:  # asked for by name: no quiet fallback
                raise
            log.warning("OpenVINO is not usable here (%s); running on PyTorch", err)
            return None

    @property
    def multi_style(self) -> bool:
        return self.network.num_styles > 1

    def style_weights(self, style: StyleSpec | None) -> torch.Tensor | Morph | None:
        """Blend weights (S,) or a ``Morph`` for a multi-style model; None for a single-style one
        (which refuses any ``style``)."""
        if not self.multi_style:
            if style is not None:
                raise FastNSTError(f"this model paints one style ({self.style_name}); choosing a style needs a "
                                   "multi-style model", param="style")
            return None
        # no style asked for: a fitted painting's file paints that painting, any other its first style
        return parse_style(self.metadata.style_by_default if style is None else style, self.style_names)

    def style_label(self, style: StyleSpec | None) -> str:
        """The name outputs get for ``style``: the model's name, a style's, or a blend's."""
        weights = self.style_weights(style)
        if weights is None:
            return self.style_name
        if isinstance(weights, Morph):
            return f"{mix_label(weights.start, self.style_names)}-to-{mix_label(weights.end, self.style_names)}"
        return mix_label(weights, self.style_names)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], device: str = "auto", precision: str = "auto",
                  channels_last: bool = False, compile: bool = False, engine: str | None = None) -> Stylizer:
        """``path``: a ``.safetensors``/``.ckpt`` model file, or a starter model's name (``starry_night``)."""
        network, meta = load_network(resolve_model(path))
        return cls(network, meta, device, precision, channels_last, compile, engine)

    def run_network(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """The bare forward pass on the model's device and dtype; returns the raw output there.
        ``style``: blend weights (S,) or (N, S) of a multi-style model."""
        if self.openvino is not None and min(x.shape[-2:]) >= MIN_SIZE:
            return self.openvino(x, style)
        x = x.to(self.device, self.dtype, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if style is None:
            return self._forward(x)
        return self._forward(x, style.to(self.device))

    @torch.inference_mode()
    def stylize_tensor(self, x: torch.Tensor, options: StylizeOptions = StylizeOptions(),
                       style: torch.Tensor | None = None, cancel: Callable[[], None] | None = None) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] on any device -> (N, 3, H, W) float32 in [0, 1] on the same device.
        ``style``: blend weights (S,) or per image (N, S), overriding ``options.style`` (video morphs).
        ``cancel``: called before each network pass (each tile of a tiled image); what it raises stops
        the work and propagates."""
        if cancel is not None:
            cancel()
        if style is None:
            weights = self.style_weights(options.style)
            if isinstance(weights, Morph):
                raise FastNSTError("a morph (a..b) moves over a video's frames; give one style or a blend for "
                                   "images", param="style")
            style = weights
        if style is not None:
            style = style.float().expand(x.shape[0], -1)
        if options.strength == 0:
            return x.float()
        h, w = x.shape[-2:]
        net_size = (max(1, round(h * options.scale)), max(1, round(w * options.scale)))
        inp = resize(x, net_size) if net_size != (h, w) else x
        tile = self._auto_tile(net_size, x.shape[0]) if options.tile is None else options.tile
        if tile and max(net_size) > tile:
            y = torch.cat([self._run_tiled(inp[i:i + 1], tile, options.overlap, None if style is None else style[i],
                                           cancel) for i in range(x.shape[0])])
        else:
            y = self.run_network(inp, style).float().to(x.device)
        y = y.clamp(0, 1)
        if net_size != (h, w):
            y = resize(y, (h, w))
        x = x.float()
        if options.preserve_color:
            y = preserve_color(y, x)
        return blend(y, x, options.strength)

    def _auto_tile(self, size: tuple[int, int], batch: int) -> int | None:
        width = self.network.channels / 32
        need = size[0] * size[1] * batch * BYTES_PER_PIXEL_JOHNSON * width * self.dtype.itemsize / 4
        if need < 0.5 * available_memory(self.device):
            return None
        log.info("image too large to run whole (%.1f GB needed): tiling at 1024 px", need / 1e9)
        return 1024

    def _run_tiled(self, x: torch.Tensor, tile: int, overlap: int, style: torch.Tensor | None,
                   cancel: Callable[[], None] | None = None) -> torch.Tensor:
        small = fit_long_side(x, STATS_SIZE, upscale=False)

        def network(t: torch.Tensor) -> torch.Tensor:
            return self.network(t) if style is None else self.network(t, style.to(self.device))

        stats = measure_norm_stats(network, small.to(self.device, self.dtype), modules=self.network)
        if self.openvino is not None:  # the graph variant that takes the statistics as inputs
            engine = self.openvino
            return run_tiled(lambda t: engine(t, style, stats), x, tile, overlap, self.device, torch.float32, cancel,
                             grid=self.network.downsampling)
        with fixed_norm_stats(self.network, stats):
            return run_tiled(network, x, tile, overlap, self.device, self.dtype, cancel, grid=self.network.downsampling)

    def stylize(self, image: Image.Image, options: StylizeOptions | None = None,
                cancel: Callable[[], None] | None = None, **kwargs: Any) -> Image.Image:
        """Stylize a Pillow image of any mode; alpha is kept, the result is RGB(A).
        Keyword arguments are ``StylizeOptions`` fields; ``cancel`` as in ``stylize_tensor``."""
        return self.stylize_many([image], options, cancel, **kwargs)[0]

    def stylize_many(self, images: list[Image.Image], options: StylizeOptions | None = None,
                     cancel: Callable[[], None] | None = None, **kwargs: Any) -> list[Image.Image]:
        """Stylize several images; images of one size go through the network as one batch."""
        if options is not None and kwargs:
            raise TypeError("pass either options or keyword arguments, not both")
        options = options or StylizeOptions(**kwargs)
        prepared = [self._prepare(img, options) for img in images]
        results: list[Image.Image | None] = [None] * len(images)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, (x, _) in enumerate(prepared):
            by_size.setdefault(tuple(x.shape[-2:]), []).append(i)
        for indices in by_size.values():
            y = self.stylize_tensor(torch.cat([prepared[i][0] for i in indices]), options, cancel=cancel)
            for j, i in enumerate(indices):
                results[i] = _with_alpha(to_pil(y[j]), prepared[i][1])
        return results  # type: ignore[return-value]

    @staticmethod
    def _prepare(image: Image.Image, options: StylizeOptions) -> tuple[torch.Tensor, Image.Image | None]:
        rgb, alpha = split_alpha(image)
        x = to_tensor(rgb)
        if options.max_size:
            x = fit_long_side(x, options.max_size, upscale=False)
            if alpha is not None and alpha.size != (x.shape[-1], x.shape[-2]):
                alpha = alpha.resize((x.shape[-1], x.shape[-2]), Image.Resampling.LANCZOS)
        return x, alpha


def _with_alpha(rgb: Image.Image, alpha: Image.Image | None) -> Image.Image:
    if alpha is None:
        return rgb
    rgb.putalpha(alpha)
    return rgb
