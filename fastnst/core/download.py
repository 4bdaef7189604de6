"""Downloads: one helper for style images (cached) and datasets (scripts/data/download_coco.py)."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from fastnst.core.errors import FastNSTError
from fastnst.core.images import atomic_path


def download(url: str, target: Path, timeout: float = 30) -> Path:
    """Fetch ``url`` into ``target`` with a progress bar. Written under a temporary name and renamed
    when complete, so an interrupted download never looks finished. Failures are one FastNSTError."""
    target.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(url, headers={"User-Agent": "fastnst"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, atomic_path(target) as tmp:
            total = int(response.headers.get("Content-Length") or 0) or None
            with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=target.name) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise FastNSTError(f"could not download {url} ({getattr(err, 'reason', err)})") from None
    return target
