import pytest
import torch

from fastnst.core.transformer import TransformerNet


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
