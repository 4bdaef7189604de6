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


def test_config_rebuilds_the_same_architecture() -> None:
    net = TransformerNet(channels=16, num_residual=3)
    clone = TransformerNet(**net.config)
    clone.load_state_dict(net.state_dict())  # strict: same keys and shapes
