"""Image files in and out. One convention everywhere: float tensors (N, 3, H, W), RGB, in [0, 1]."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from fastnst.core.errors import FastNSTError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})

# Images declaring more pixels are refused before any pixel is decoded (decompression bombs: a 431 KB
# PNG can declare 20000x20000). 120 Mpx admits a 12000x9000 scan, which tiling handles; callers lift
# it explicitly for bigger ones (`fastnst stylize --max-pixels`, 0 for no limit).
MAX_IMAGE_PIXELS = 120_000_000


def find_images(root: Path, recursive: bool = True, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Files under ``root`` with one of ``extensions`` (images by default), sorted for reproducibility."""
    pattern, wanted = ("**/*" if recursive else "*"), frozenset(extensions)
    return sorted(p for p in root.glob(pattern) if p.suffix.lower() in wanted and p.is_file())


def open_image(path: Path | str, max_pixels: int | None = MAX_IMAGE_PIXELS,
               long_side: int | None = None) -> Image.Image:
    """Open and fully decode an image, EXIF orientation applied; any failure is one FastNSTError.

    ``max_pixels``: refuse images declaring more (None: no limit). ``long_side``: the caller will
    downscale to this, so JPEGs may be decoded at a reduced scale (Pillow's draft: 1/2, 1/4, 1/8,
    never below the size asked for), which saves most of the memory and time on big photos."""
    path = Path(path)
    if not path.exists():
        raise FastNSTError(f"no such file: {path}")
    if path.is_dir():
        raise FastNSTError(f"{path} is a folder, not an image")
    if path.stat().st_size == 0:
        raise FastNSTError(f"{path} is empty (0 bytes)")
    return _decode(path, str(path), max_pixels, long_side)


def decode_image(data: bytes, name: str = "stdin", max_pixels: int | None = MAX_IMAGE_PIXELS,
                 long_side: int | None = None) -> Image.Image:
    """``open_image`` for bytes already in memory (stdin, uploads); ``name`` is used in errors."""
    if not data:
        raise FastNSTError(f"{name}: no image data")
    return _decode(io.BytesIO(data), name, max_pixels, long_side)


def _decode(source: Path | io.BytesIO, name: str, max_pixels: int | None, long_side: int | None) -> Image.Image:
    try:
        with warnings.catch_warnings(), _no_pillow_limit():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(source)  # reads the header only
            pixels = img.width * img.height
            if max_pixels is not None and pixels > max_pixels:
                raise FastNSTError(f"{name} declares {img.width}x{img.height} = {pixels / 1e6:.0f} Mpx, over the "
                                   f"limit of {max_pixels / 1e6:.0f} Mpx (a decompression bomb?); raise the limit "
                                   "if it is a real scan", param="max_pixels")
            if long_side and img.format == "JPEG" and max(img.size) > 2 * long_side:
                img.draft("RGB", (long_side, long_side))
            img.load()  # decode now: truncated files fail here, not halfway through a batch
    except UnidentifiedImageError:
        raise FastNSTError(f"{name} is not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise FastNSTError(f"{name} is corrupt or truncated ({err})") from None
    return ImageOps.exif_transpose(img)


@contextlib.contextmanager
def _no_pillow_limit() -> Iterator[None]:
    """Pillow's own bomb check reads a module global and would refuse before ours can name the limit;
    switch it off for this call only and put it back, so the rest of the process is unaffected."""
    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = before


def split_alpha(img: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """Any Pillow mode -> (RGB image or 16-bit grey, alpha or None). CMYK, palette and grey convert."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    alpha = None
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = img.getchannel("A")
        img = img.convert("RGB")
    if img.mode not in ("RGB", "I", "I;16", "I;16B", "I;16L", "F"):
        img = img.convert("RGB")
    return img, alpha


def to_tensor(img: Image.Image) -> torch.Tensor:
    """Pillow image (any mode) -> (1, 3, H, W) float32 RGB in [0, 1]; alpha is dropped."""
    img, _ = split_alpha(img)
    arr = np.asarray(img)
    if img.mode.startswith("I"):  # 16-bit greyscale PNG/TIFF: scale by the 16-bit range, keep precision
        arr = arr.astype(np.float32) / 65535.0
    elif img.mode == "F":
        arr = np.clip(arr, 0.0, 1.0)
    else:
        arr = arr.astype(np.float32) / 255.0
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 3, *size), bicubic with antialiasing (for downscaling), clamped to [0, 1]."""
    return F.interpolate(x.float(), size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


def fit_long_side(x: torch.Tensor, size: int, upscale: bool = True) -> torch.Tensor:
    """Resize so the long side is ``size``, keeping the aspect ratio; with ``upscale=False`` images
    already that small are returned as they are."""
    h, w = x.shape[-2:]
    if not upscale and max(h, w) <= size:
        return x
    f = size / max(h, w)
    return resize(x, (max(1, round(h * f)), max(1, round(w * f))))


def to_pil(x: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) in [0, 1] (clamped) -> RGB Pillow image, rounding to nearest."""
    if x.dim() == 4:
        x = x[0]
    arr = x.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


def load_rgb(path: Path | str) -> torch.Tensor:
    """Read any supported image file as a (1, 3, H, W) tensor in [0, 1]."""
    return to_tensor(open_image(path))


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds,
    so an interrupted write never leaves a file that looks finished."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
    except OSError as err:
        raise FastNSTError(f"cannot write to {path.parent}: {err.strerror}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; finished files get the usual mode
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_image(img: Image.Image, path: Path | str, quality: int = 95) -> None:
    """Save atomically; the format follows the extension. JPEG cannot hold alpha, so it is dropped."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise FastNSTError(f"cannot write images with extension {path.suffix!r}")
    if fmt in ("JPEG", "BMP") and img.mode == "RGBA":
        img = img.convert("RGB")
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    with atomic_path(path) as tmp:
        try:
            img.save(tmp, format=fmt, **options)
        except OSError as err:
            raise FastNSTError(f"cannot write {path}: {err}") from None
