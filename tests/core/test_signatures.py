"""Style signatures: a painting's VGG channel statistics, compared across paintings (core/signatures.py)."""

import pytest
import torch

from fastnst.core.modelfile import ModelMeta, save_stylizer
from fastnst.core.signatures import distances, signature
from fastnst.core.transformer import TransformerNet
from fastnst.core.vgg import VGGFeatures

LAYERS = {"relu1_2": 1.0, "relu2_2": 0.5}


def paintings() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    texture = torch.rand(1, 1, 48, 48)
    red = torch.cat([0.8 + 0.2 * texture, 0.1 * texture, 0.1 * texture], dim=1)
    return {"red": red, "reddish": red * torch.tensor([0.9, 1.0, 1.0]).view(1, 3, 1, 1) + 0.05,
            "blue": red.flip(1)}


def test_a_painting_is_nearest_itself_then_the_one_most_like_it() -> None:
    vgg = VGGFeatures("vgg16", LAYERS, weights="random")
    found = {k: signature(vgg, v, LAYERS) for k, v in paintings().items()}
    assert found["red"].shape == (2 * (64 + 128),)
    d = distances(torch.stack([found["red"], found["blue"], found["reddish"]]), found["reddish"], LAYERS)
    assert d[2] == pytest.approx(0, abs=1e-6)
    assert 0 < d[0] < d[1]
    with pytest.raises(ValueError, match="signatures of"):
        distances(torch.stack([found["red"]]), found["red"], {"relu1_2": 1.0})


def test_a_file_keeps_one_signature_per_style(tmp_path) -> None:
    net = TransformerNet(channels=8, num_residual=1, num_styles=2)
    with pytest.raises(ValueError, match="2 styles"):
        save_stylizer(net, tmp_path / "m.safetensors", ModelMeta(styles=["a", "b"]), signatures=torch.zeros(3, 4))
