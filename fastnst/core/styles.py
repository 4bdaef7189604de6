"""Where style images come from: a local path, or an http(s) URL downloaded once into a cache."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

import torch
from tqdm import tqdm

from fastnst.core.errors import FastNSTError
from fastnst.core.images import atomic_path, fit_long_side, load_rgb


def cache_dir() -> Path:
    """``$FASTNST_CACHE``, else ``$XDG_CACHE_HOME/fastnst``, else ``~/.cache/fastnst``."""
    if env := os.environ.get("FASTNST_CACHE"):
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "fastnst"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve(location: str) -> Path:
    """A local path as is; a URL downloaded once (with a progress bar) and then read from the cache."""
    if not location.startswith(("http://", "https://")):
        return Path(location).expanduser()
    name = Path(urllib.request.url2pathname(location.split("?")[0])).name or "image"
    target = cache_dir() / "styles" / f"{hashlib.sha1(location.encode()).hexdigest()[:12]}_{name}"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(location, headers={"User-Agent": "fastnst"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response, atomic_path(target) as tmp:
            total = int(response.headers.get("Content-Length") or 0) or None
            with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=name) as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise FastNSTError(f"could not download {location} ({reason}); "
                           "pass style.image=PATH to a local copy") from None
    return target


def load_style(location: str, size: int) -> tuple[torch.Tensor, str]:
    """The style image as (1, 3, H, W) with its long side resized to ``size``, and its sha256."""
    path = resolve(location)
    return fit_long_side(load_rgb(path), size), sha256_file(path)
