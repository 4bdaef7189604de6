import pytest
import torch

from fastnst.core.transformer import ConvLayer, TransformerNet


def count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_parameter_count_matches_pytorch_examples() -> None:
    assert count(TransformerNet()) == 1_679_235


def test_small_model_has_about_a_quarter_of_the_parameters() -> None:
    assert count(TransformerNet(channels=16)) < count(TransformerNet()) / 3.5


@pytest.mark.parametrize("size", [(1, 1), (7, 3), (33, 65), (64, 48), (65, 49)])
def test_output_size_equals_input_size(size: tuple[int, int]) -> None:
    net = TransformerNet(channels=8, num_residual=1)
    assert net(torch.rand(2, 3, *size)).shape == (2, 3, *size)


def test_gradients_reach_the_first_layer() -> None:
    net = TransformerNet(channels=8, num_residual=1)
    net(torch.rand(1, 3, 32, 32)).mean().backward()
    assert net.conv1.conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("output", ["sigmoid", "raw"])
def test_config_rebuilds_the_same_network(output: str) -> None:
    net = TransformerNet(channels=16, num_residual=3, output=output).eval()
    clone = TransformerNet(**net.config).eval()
    clone.load_state_dict(net.state_dict())  # strict: same keys and shapes
    x = torch.rand(2, 3, 40, 36)
    torch.testing.assert_close(clone(x), net(x))  # and the same function, output squashing included
    assert sum(p.numel() for p in clone.parameters()) == sum(p.numel() for p in net.parameters())


def test_sigmoid_output_stays_in_the_image_range_and_raw_does_not_have_to() -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32) * 4 - 2  # far outside [0, 1]: the raw network's output follows
    squashed = TransformerNet(channels=8, num_residual=1)(x)
    assert 0 < squashed.min() and squashed.max() < 1
    raw = TransformerNet(channels=8, num_residual=1, output="raw")
    with torch.no_grad():
        raw.deconv3.conv.bias.fill_(3.0)
    assert raw(x).min() > 1


def test_under_autocast_the_padding_stays_in_bf16_and_the_output_is_unchanged() -> None:
    # Autocast would pad in fp32 (a cast up and back down around every convolution); the values are the same.
    torch.manual_seed(0)
    layer = ConvLayer(8, 8, 3)
    x = torch.randn(2, 8, 16, 16).bfloat16()
    dtypes = []
    layer.pad.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
        expected = layer.conv(layer.pad(x.float()))  # what autocast did: pad in fp32, then conv in bf16
    assert dtypes[0] == torch.bfloat16
    assert torch.equal(y, expected)


@pytest.mark.parametrize("kernel", [3, 9])
def test_the_padding_gradient_is_autograds(kernel: int) -> None:
    # ConvLayer's reflection padding has a hand-written backward (PyTorch's was 3-5x slower on a CPU).
    torch.manual_seed(0)
    layer = ConvLayer(3, 4, kernel).double()
    x = torch.randn(2, 3, 11, 13, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 4, 11, 13, dtype=torch.float64)
    (layer(x) * weights).sum().backward()
    y = x.detach().clone().requires_grad_()
    pad = kernel // 2
    (layer.conv(torch.nn.functional.pad(y, (pad,) * 4, mode="reflect")) * weights).sum().backward()
    torch.testing.assert_close(x.grad, y.grad)
