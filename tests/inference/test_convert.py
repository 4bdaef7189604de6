"""`fastnst convert`: pytorch/examples fast_neural_style models become fastnst stylizers with the same outputs."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastnst.cli.main import main
from fastnst.core.errors import FastNSTError
from fastnst.core.modelfile import load_network
from fastnst.inference.convert import convert


class TheirConv(nn.Module):
    """pytorch/examples' layout: reflection pad + conv2d, optional nearest x2 upsampling first."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, upsample: bool = False) -> None:
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(k // 2)
        self.conv2d = nn.Conv2d(cin, cout, k, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, mode="nearest", scale_factor=2)
        return self.conv2d(self.reflection_pad(x))


class TheirResidual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.in1 = TheirConv(c, c, 3), nn.InstanceNorm2d(c, affine=True)
        self.conv2, self.in2 = TheirConv(c, c, 3), nn.InstanceNorm2d(c, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.in2(self.conv2(F.relu(self.in1(self.conv1(x)))))


class TheirNet(nn.Module):
    """Their key names (conv1.conv2d.weight, res1..res5, deconv1.conv2d...), 0-255 in and out."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.in1 = TheirConv(3, 32, 9), nn.InstanceNorm2d(32, affine=True)
        self.conv2, self.in2 = TheirConv(32, 64, 3, 2), nn.InstanceNorm2d(64, affine=True)
        self.conv3, self.in3 = TheirConv(64, 128, 3, 2), nn.InstanceNorm2d(128, affine=True)
        for i in range(1, 6):
            setattr(self, f"res{i}", TheirResidual(128))
        self.deconv1, self.in4 = TheirConv(128, 64, 3, upsample=True), nn.InstanceNorm2d(64, affine=True)
        self.deconv2, self.in5 = TheirConv(64, 32, 3, upsample=True), nn.InstanceNorm2d(32, affine=True)
        self.deconv3 = TheirConv(32, 3, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.in1(self.conv1(x)))
        y = F.relu(self.in2(self.conv2(y)))
        y = F.relu(self.in3(self.conv3(y)))
        for i in range(1, 6):
            y = getattr(self, f"res{i}")(y)
        y = F.relu(self.in4(self.deconv1(y)))
        y = F.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


@pytest.fixture
def theirs(tmp_path: Path) -> tuple[TheirNet, Path]:
    torch.manual_seed(1)
    net = TheirNet().eval()
    with torch.no_grad():  # non-trivial affine parameters, as a trained model has
        for module in net.modules():
            if isinstance(module, nn.InstanceNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    state = net.state_dict()
    # Files saved by PyTorch < 0.4 carry InstanceNorm running statistics that the model never used.
    state["in1.running_mean"], state["in1.running_var"] = torch.zeros(32), torch.ones(32)
    path = tmp_path / "candy.model"
    torch.save(state, path)
    return net, path


def test_a_converted_model_gives_their_outputs(theirs: tuple[TheirNet, Path]) -> None:
    net, path = theirs
    converted, meta = load_network(convert(path))
    assert meta.style_name == "candy" and "pytorch/examples" in meta.description
    x = torch.rand(2, 3, 64, 48)
    with torch.no_grad():
        expected = net(x * 255) / 255  # their units: 0-255 in and out
        torch.testing.assert_close(converted(x), expected, atol=2e-4, rtol=1e-4)


def test_convert_on_the_command_line(theirs: tuple[TheirNet, Path], tmp_path: Path) -> None:
    _, path = theirs
    assert main(["convert", str(path), "-o", str(tmp_path / "c.safetensors"), "--name", "my candy"]) == 0
    assert load_network(tmp_path / "c.safetensors")[1].style_name == "my candy"


def test_a_file_that_is_not_their_model_is_one_error(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(FastNSTError, match="not a pytorch/examples fast_neural_style model"):
        convert(tmp_path / "other.pth")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(FastNSTError, match="not a loadable PyTorch weights file"):
        convert(tmp_path / "text.pth")
