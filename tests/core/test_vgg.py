from pathlib import Path

import pytest
import torch
from torchvision import models

from fastnst.core.errors import FastNSTError
from fastnst.core.vgg import VGGFeatures, layer_names


def test_layer_names_follow_torchvision_features() -> None:
    assert len(layer_names("vgg16")) == len(models.vgg16().features)
    assert len(layer_names("vgg19")) == len(models.vgg19().features)
    assert layer_names("vgg19")[layer_names("vgg19").index("conv4_2") + 1] == "relu4_2"


def test_network_is_truncated_after_the_deepest_layer() -> None:
    vgg = VGGFeatures("vgg16", ["relu2_2"], weights="random")
    assert len(vgg.features) == layer_names("vgg16").index("relu2_2") + 1


def test_random_weights_are_seeded() -> None:
    a = VGGFeatures("vgg16", ["relu1_2"], weights="random", seed=3)
    b = VGGFeatures("vgg16", ["relu1_2"], weights="random", seed=3)
    torch.testing.assert_close(a.features[0].weight, b.features[0].weight)


def test_a_local_state_dict_loads(tmp_path: Path) -> None:
    ref = models.vgg16()
    torch.save(ref.state_dict(), tmp_path / "vgg16.pth")
    vgg = VGGFeatures("vgg16", ["relu1_2"], weights=str(tmp_path / "vgg16.pth"))
    torch.testing.assert_close(vgg.features[0].weight, ref.features[0].weight)


def test_weights_of_the_wrong_architecture_are_refused(tmp_path: Path) -> None:
    torch.save(models.vgg19().state_dict(), tmp_path / "vgg19.pth")
    with pytest.raises(FastNSTError, match="does not hold torchvision vgg16"):
        VGGFeatures("vgg16", ["relu1_2"], weights=str(tmp_path / "vgg19.pth"))


@pytest.mark.parametrize("content", [None, b"not a checkpoint"])
def test_missing_or_garbage_weights_file_is_a_clear_error(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "w.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(FastNSTError, match="w.pth"):
        VGGFeatures("vgg16", ["relu1_2"], weights=str(path))


def test_unknown_layer_is_a_clear_error() -> None:
    with pytest.raises(FastNSTError, match="relu9_9"):
        VGGFeatures("vgg16", ["relu9_9"], weights="random")


def test_features_on_a_cpu_are_channels_last_and_the_same_as_nchw() -> None:
    # oneDNN's convolutions work channels-last: NCHW maps cost a reorder around every layer.
    vgg = VGGFeatures("vgg16", ["relu2_2"], weights="random", seed=0)
    x = torch.rand(1, 3, 32, 32)
    out = vgg(x, ["relu2_2"])["relu2_2"]
    assert out.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = vgg.features(((x - vgg.mean) / vgg.std).contiguous())
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
