"""Where fastnst keeps what it makes once and reuses: downloaded style images, OpenVINO graphs, fitted styles."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$FASTNST_CACHE``, else ``$XDG_CACHE_HOME/fastnst``, else ``~/.cache/fastnst``."""
    if env := os.environ.get("FASTNST_CACHE"):
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "fastnst"
