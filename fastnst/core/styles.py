"""Where style images come from: a painting that ships with fastnst (``builtin:NAME``), a local path,
or an http(s) URL downloaded once into a cache."""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

import torch
from PIL import Image

from fastnst.core.cache import cache_dir
from fastnst.core.download import download
from fastnst.core.errors import FastNSTError
from fastnst.core.images import MAX_IMAGE_PIXELS, fit_long_side, open_image, to_tensor

MIN_STYLE_SIDE = 16  # px, after resizing: the VGG's fourth block sees 2 px of it (three 2x poolings)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


BUILTIN_DIR = Path(__file__).resolve().parent.parent / "assets" / "styles"
BUILTIN = "builtin:"


def builtin_styles() -> list[str]:
    """Names of the public-domain paintings that ship with fastnst (``builtin:NAME``)."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.jpg"))


def resolve(location: str) -> Path:
    """``builtin:NAME`` from the package; a local path as is; a URL downloaded once (with a progress
    bar) and then read from the cache."""
    if location.startswith(BUILTIN):
        name = location.removeprefix(BUILTIN)
        if name not in builtin_styles():
            raise FastNSTError(f"no built-in style image {name!r}; built in: {', '.join(builtin_styles())}")
        return BUILTIN_DIR / f"{name}.jpg"
    if not location.startswith(("http://", "https://")):
        return Path(location).expanduser()
    name = Path(urllib.request.url2pathname(location.split("?")[0])).name or "image"
    target = cache_dir() / "styles" / f"{hashlib.sha1(location.encode()).hexdigest()[:12]}_{name}"
    if target.is_file():
        return target
    try:
        return download(location, target)
    except FastNSTError as err:
        raise FastNSTError(f"{err}; pass a local copy of the style image instead") from None


def read_painting(path: Path, size: int, max_pixels: int | None = MAX_IMAGE_PIXELS, min_side: int = 0,
                  param: str = "style_image") -> tuple[torch.Tensor, list[str]]:
    """A painting as (1, 3, H, W) in [0, 1] with its long side resized to ``size``, and notes on what was
    changed (transparency flattened on white, greyscale): the one reader of style images, for training,
    Gatys and the painting fitter. Every mode the stylize path reads is read the same way (16-bit and float
    greyscale keep their range). Raises FastNSTError for what cannot be a style: not an image, over the
    pixel limit, under ``min_side`` px on a side, or so elongated that its short side would be under
    16 px at ``size`` (the VGG would see nothing of it)."""
    if not path.is_file():
        raise FastNSTError(f"{path}: no such painting file", param=param)
    try:
        image = open_image(path, max_pixels, long_side=size)
    except FastNSTError as err:
        if err.param != "max_pixels":
            raise
        raise FastNSTError(f"{err}".split("; raise the limit")[0] + "; a style needs far fewer pixels: scale it "
                           "down", param=param) from None
    if min(image.size) < min_side:
        raise FastNSTError(f"{path.name} is {image.width}x{image.height}: a painting needs at least "
                           f"{min_side} px on each side to show its brushwork", param=param)
    if min(image.size) * size < MIN_STYLE_SIDE * max(image.size):
        raise FastNSTError(f"{path.name} is {image.width}x{image.height}: too elongated to be a style (its short "
                           f"side would be under {MIN_STYLE_SIDE} px at {size} px long); crop it", param=param)
    notes = []
    if "A" in image.getbands() or image.mode == "P" and "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, (255, 255, 255))
        image.paste(rgba, mask=rgba.getchannel("A"))
        notes.append(f"{path.name} has transparency: fitted on a white background")
    factor = max(image.size) // (2 * size)
    if factor > 1 and image.mode in ("RGB", "L"):  # a box reduce before the float copy: a 110 Mpx scan stays small
        image = image.reduce(factor)
    x = fit_long_side(to_tensor(image), size)
    if image.mode in ("L", "LA", "1", "I", "I;16", "I;16B", "I;16L", "F") or _is_grey(x):
        notes.append(f"{path.name} is greyscale: the style will be grey")
    return x, notes


def _is_grey(x: torch.Tensor) -> bool:
    """At 32x32, no channel differs from another by more than 2/255 (JPEG's chroma noise on a grey scan)."""
    small = torch.nn.functional.adaptive_avg_pool2d(x, 32)
    return bool((small.amax(dim=1) - small.amin(dim=1)).max() <= 2 / 255)


def load_style(location: str, size: int) -> tuple[torch.Tensor, str]:
    """The style image as (1, 3, H, W) with its long side resized to ``size``, and its sha256."""
    path = resolve(location)
    return read_painting(path, size, param="style_image")[0], sha256_file(path)
