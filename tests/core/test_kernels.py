"""The CPU kernels (fastnst/core/kernels.py) give the values and gradients of the plain expressions."""

import pytest
import torch

from fastnst.core.kernels import reflection_pad
from fastnst.core.losses import gram_matrix
from fastnst.core.transformer import ConvLayer


def test_gram_of_bf16_features_is_fp32_and_as_close_as_bf16_rounding() -> None:
    f = torch.randn(2, 8, 64, 64).relu()  # post-ReLU features, as the loss sees them
    with torch.autocast("cpu", dtype=torch.bfloat16):
        g = gram_matrix(f.bfloat16())
    exact = gram_matrix(f.bfloat16().float())  # the same inputs, multiplied in fp32
    assert g.dtype == torch.float32
    assert ((g - exact).norm() / exact.norm()) < 2 ** -8


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gram_of_channels_last_features_is_the_same_and_sends_channels_last_gradients(dtype: torch.dtype) -> None:
    # The VGG runs channels-last on a CPU: a gradient in the other layout slowed every ReLU behind it.
    f = torch.randn(2, 16, 12, 10).relu().to(dtype)
    cl = f.contiguous(memory_format=torch.channels_last).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        g = gram_matrix(cl)
    tol = {"rtol": 1e-2, "atol": 1e-3} if dtype == torch.bfloat16 else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(g, gram_matrix(f), **tol)
    g.sum().backward()
    assert cl.grad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_gram_gradient_is_autograds_of_the_formula(layout: torch.memory_format) -> None:
    # The Gram's backward is written by hand (one product instead of autograd's two and a sum).
    f = torch.randn(2, 4, 3, 5).contiguous(memory_format=layout).requires_grad_()
    weights = torch.randn(2, 4, 4)  # a loss that is not symmetric in G, so both halves of the gradient count
    (gram_matrix(f) * weights).sum().backward()
    g = f.detach().clone().requires_grad_()
    flat = g.flatten(2)
    ((flat @ flat.transpose(1, 2) / (4 * 3 * 5)) * weights).sum().backward()
    torch.testing.assert_close(f.grad, g.grad)
    assert f.grad.is_contiguous(memory_format=layout)


def test_under_autocast_the_padding_stays_in_bf16_and_the_output_is_unchanged() -> None:
    # Autocast would pad in fp32 (a cast up and back down around every convolution); the values are the same.
    torch.manual_seed(0)
    layer = ConvLayer(8, 8, 3)
    x = torch.randn(2, 8, 16, 16).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        padded = reflection_pad(x, 1)
        y = layer(x)
        expected = layer.conv(layer.pad(x.float()))  # what autocast did: pad in fp32, then conv in bf16
    assert padded.dtype == torch.bfloat16
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
