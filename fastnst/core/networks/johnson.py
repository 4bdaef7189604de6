"""The image transformation network of Johnson et al. 2016 ("Perceptual Losses for
Real-Time Style Transfer and Super-Resolution"), as in pytorch/examples ``fast_neural_style``:
c9s1-32, d64, d128, five residual blocks of 128, two resize-convolution upsamplings, c9s1-3,
with instance normalisation (Ulyanov et al. 2016) and reflection padding.

With ``num_styles > 1`` every instance norm holds one learned (γ, β) pair per style and everything
else is shared: conditional instance normalisation (Dumoulin, Shlens & Kudlur 2017, "A Learned
Representation for Artistic Style"). A blend of styles is a convex combination of their (γ, β).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastnst.core.kernels import reflection_pad
from fastnst.core.networks.base import UPSAMPLING, StyleInstanceNorm, StyleNetwork, upsample, upsample_mode


class ConvLayer(nn.Module):
    """Reflection-padded convolution, so borders are not darkened by zero padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel_size // 2)  # holds the width; reflection_pad does the work
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(reflection_pad(x, self.pad.padding[0]))


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with instance norm and an identity shortcut (He et al. 2016)."""

    def __init__(self, channels: int, num_styles: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.in1 = StyleInstanceNorm(channels, num_styles)
        self.conv2 = ConvLayer(channels, channels, 3)
        self.in2 = StyleInstanceNorm(channels, num_styles)

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        y = F.relu(self.in1(self.conv1(x), style))
        return x + self.in2(self.conv2(y), style)


class UpsampleConvLayer(nn.Module):
    """x2 upsampling (``mode``: nearest or bilinear, ``networks.base.upsample``) followed by a convolution.

    Resize-convolution instead of a transposed convolution avoids checkerboard artefacts
    (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts", Distill).
    The upsampled map is resized to ``size`` so that any input height/width round-trips.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mode: str = "nearest") -> None:
        super().__init__()
        self.conv = ConvLayer(in_channels, out_channels, kernel_size)
        self.mode = mode

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.conv(upsample(x, size, self.mode))


OUTPUTS = ("sigmoid", "raw")


class TransformerNet(StyleNetwork):
    """Maps an image batch (N, 3, H, W) in [0, 1] to a stylized batch of the same shape.

    ``channels`` is the width of the first layer (32 in the paper, 16 for ``johnson_small``);
    later layers use 2x and 4x that. Any H, W >= 1 gives an output of size H x W: the strided
    convolutions round up and the upsamplings resize back to the exact encoder sizes.

    ``output``: ``sigmoid`` squashes the last convolution into (0, 1); ``raw`` leaves it unbounded
    (pytorch/examples' network, whose output is in 0-255 units; ``stylize`` clamps it). The sigmoid
    bounds how far one Adam step moves the image, so training starts smoothly (docs/training.md has
    the measurements).

    ``num_styles``: how many styles the network paints (conditional instance norm); ``forward`` then
    takes ``style``, blend weights of shape (S,) or (N, S) (default: the first style).

    ``upsample``: ``bilinear`` (what new training uses) or ``nearest`` (files that do not say); the mode
    changes no weight, so a model trained with one can be fine-tuned with the other.
    """

    arch = "johnson"
    limits = {"channels": (1, 256), "num_residual": (0, 64)}
    choices = {"output": OUTPUTS, "upsample": UPSAMPLING}
    downsampling = 4

    def __init__(self, channels: int = 32, num_residual: int = 5, output: str = "sigmoid",
                 num_styles: int = 1, upsample: str = "nearest") -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if num_styles < 1:
            raise ValueError(f"num_styles must be at least 1, got {num_styles}")
        c1, c2, c3 = channels, 2 * channels, 4 * channels
        self.channels, self.num_residual, self.output, self.num_styles = channels, num_residual, output, num_styles
        self.upsample = upsample_mode(upsample)
        s = num_styles
        self.conv1, self.in1 = ConvLayer(3, c1, 9), StyleInstanceNorm(c1, s)
        self.conv2, self.in2 = ConvLayer(c1, c2, 3, stride=2), StyleInstanceNorm(c2, s)
        self.conv3, self.in3 = ConvLayer(c2, c3, 3, stride=2), StyleInstanceNorm(c3, s)
        self.res = nn.ModuleList(ResidualBlock(c3, s) for _ in range(num_residual))
        self.deconv1, self.in4 = UpsampleConvLayer(c3, c2, 3, upsample), StyleInstanceNorm(c2, s)
        self.deconv2, self.in5 = UpsampleConvLayer(c2, c1, 3, upsample), StyleInstanceNorm(c1, s)
        self.deconv3 = ConvLayer(c1, 3, 9)

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        # Reflection padding needs at least pad+1 pixels; tiny inputs are padded up and cropped back.
        h, w = x.shape[-2:]
        if h < 5 or w < 5:
            x = F.pad(x, (0, max(0, 5 - w), 0, max(0, 5 - h)), mode="replicate")
        s = self.style_weights(style, x)
        y1 = F.relu(self.in1(self.conv1(x), s))
        y2 = F.relu(self.in2(self.conv2(y1), s))
        y = F.relu(self.in3(self.conv3(y2), s))
        for block in self.res:
            y = block(y, s)
        y = F.relu(self.in4(self.deconv1(y, y2.shape[-2:]), s))
        y = F.relu(self.in5(self.deconv2(y, y1.shape[-2:]), s))
        y = self.deconv3(y)[..., :h, :w]
        return torch.sigmoid(y) if self.output == "sigmoid" else y

    @property
    def config(self) -> dict[str, int | str]:
        """Constructor arguments, stored in model files so they rebuild the same network.
        ``num_styles`` appears only for multi-style networks and ``upsample`` only when it is not ``nearest``:
        files of networks that were possible before stay as they were."""
        return self._recorded({"channels": self.channels, "num_residual": self.num_residual, "output": self.output})
