"""scripts/quality/judge.py, the independent judge of the side-by-side comparison: its numbers mean what they say."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torchvision import models

from scripts.quality import judge

from conftest import make_image


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg16.safetensors"
    save_file({f"features.{k}": v for k, v in models.vgg16(weights=None).features.state_dict().items()}, str(path))
    return path


def test_the_painting_itself_scores_zero_and_a_photo_does_not(vgg_file: Path, tmp_path: Path) -> None:
    painting = make_image(tmp_path / "painting.png", (64, 48), seed=1)
    photo = make_image(tmp_path / "photo.png", (64, 48), seed=2)
    j = judge.Judge(vgg_file, painting)
    itself = j.score(judge.load_image(painting, judge.STYLE_SIZE), judge.load_image(photo))
    assert all(itself[k] < 1e-6 for k in judge.STYLE_LAYERS) and itself["palette"] < 1e-6
    other = j.score(judge.load_image(photo), judge.load_image(photo))
    assert all(other[k] > 1e-3 for k in judge.STYLE_LAYERS) and other["palette"] > 1e-3
    assert other["content"] == 0  # the photo keeps all of itself


def test_the_palette_distance_is_the_sliced_wasserstein_distance() -> None:
    a = torch.zeros(100, 3)
    b = torch.full((100, 3), 0.5)
    # Every projection moves every pixel by 0.5·(d·1): the mean over directions of |0.5·Σd|.
    g = torch.Generator().manual_seed(1)
    d = torch.randn(3, 64, generator=g)
    d = d / d.norm(dim=0, keepdim=True)
    expected = (0.5 * d.sum(0)).abs().mean().item()
    assert judge.sliced_wasserstein(a, b) == pytest.approx(expected, rel=1e-5)
    assert judge.geomean([1.0, 4.0]) == pytest.approx(2.0)
