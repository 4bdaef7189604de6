"""Where style images come from: a painting that ships with fastnst (``builtin:NAME``), a local path,
or an http(s) URL downloaded once into a cache."""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

import torch

from fastnst.core.cache import cache_dir
from fastnst.core.download import download
from fastnst.core.errors import FastNSTError
from fastnst.core.images import fit_long_side, load_rgb


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


def load_style(location: str, size: int) -> tuple[torch.Tensor, str]:
    """The style image as (1, 3, H, W) with its long side resized to ``size``, and its sha256."""
    path = resolve(location)
    return fit_long_side(load_rgb(path), size), sha256_file(path)
