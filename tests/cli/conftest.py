"""Fixtures of the painting-fitting commands' tests (add-style, stylize --style-image)."""

from __future__ import annotations

from pathlib import Path

import pytest

from samples import make_image, tiny_base


@pytest.fixture
def fit_cache(tmp_path: Path, monkeypatch) -> None:
    """A cache of its own, and the test's folder as the working one (default outputs land there)."""
    monkeypatch.setenv("FASTNST_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tiny_base(tmp_path / "base.safetensors")


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    for i in range(2):
        make_image(tmp_path / "photos" / f"p{i}.png", (64, 48), seed=i)
    return tmp_path / "photos"
