"""One crop for training (from a folder or a prepared array) and style fitting (core/crops.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fastnst.core.crops import centre_crop, random_crop
from fastnst.inference.fitting import random_crops
from fastnst.training.data import CachedImages, ImageFiles


def _ramp(h: int, w: int) -> torch.Tensor:
    """Channel 0 is the column (0..1 left to right), channel 1 the row: a crop shows where it came from."""
    cols = torch.linspace(0, 1, w).expand(h, w)
    rows = torch.linspace(0, 1, h)[:, None].expand(h, w)
    return torch.stack([cols, rows, torch.full((h, w), 0.5)])


def test_a_crop_is_square_in_range_and_covers_two_thirds_to_all_of_the_short_side() -> None:
    image = _ramp(60, 90)  # short side 60: crops 40-60 px of it
    g = torch.Generator().manual_seed(0)
    spans, mirrored = [], 0
    for _ in range(200):
        crop = random_crop(image, 32, generator=g)
        assert crop.shape == (3, 32, 32) and 0 <= crop.min() and crop.max() <= 1
        rows = crop[1, :, 16]
        spans.append(float(rows.max() - rows.min()) * 59 / 31 * 32 / 60)  # the crop's side over the short side
        mirrored += bool(crop[0, 16, 0] > crop[0, 16, -1])
    assert 0.6 < min(spans) < 0.75 and 0.9 < max(spans) < 1.05
    assert 70 < mirrored < 130  # half of them mirrored


def test_crops_are_reproducible_with_a_generator() -> None:
    image = _ramp(40, 50)
    a = [random_crop(image, 16, generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(a[0], a[1])
    assert not torch.equal(a[0], random_crop(image, 16, generator=torch.Generator().manual_seed(4)))


def test_a_centre_crop_is_the_middle_square() -> None:
    crop = centre_crop(_ramp(40, 80), 20)
    assert crop.shape == (3, 20, 20)
    assert abs(float(crop[0].mean()) - 0.5) < 0.02 and float(crop[0].max() - crop[0].min()) < 0.55


def test_the_fitter_draws_a_batch_of_the_same_crops() -> None:
    photos = [_ramp(36, 48)[None], _ramp(40, 40)[None]]
    batch = random_crops(photos, 16, 6, torch.Generator().manual_seed(0))
    assert batch.shape == (6, 3, 16, 16)
    assert torch.equal(batch, random_crops(photos, 16, 6, torch.Generator().manual_seed(0)))


def test_a_folder_and_a_prepared_array_train_on_the_same_crops(tmp_path: Path) -> None:
    pixels = (_ramp(48, 48).permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    np.save(tmp_path / "photos.npy", pixels[None])
    from_folder = ImageFiles([tmp_path / "photo.png"], 24, train=True)
    from_array = CachedImages(tmp_path / "photos.npy", range(1), 24, train=True)
    for seed in range(5):
        torch.manual_seed(seed)
        a = from_folder[0]
        torch.manual_seed(seed)
        b = from_array[0]
        assert a.shape == (3, 24, 24) and torch.allclose(a, b)
