"""A lighter network for real-time use: Johnson et al.'s shape (downsample by 4, residual blocks, resize-
convolution back up), with MobileNetV2's depthwise-separable inverted residual blocks (Sandler et al. 2018)
in place of the full 3x3 convolutions, and 5x5 instead of 9x9 convolutions at full resolution.

At the default width (16): 19.4k multiply-adds per pixel against ``johnson_small``'s 42.3k and ``johnson``'s
154k (torch.utils.flop_counter at 256 px), and 141k parameters: the full-resolution 9x9 convolutions and the
full residual convolutions are most of Johnson's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastnst.core.kernels import reflection_pad
from fastnst.core.networks.base import UPSAMPLING, StyleInstanceNorm, StyleNetwork, upsample, upsample_mode


class _Conv(nn.Module):
    """Reflection-padded convolution (optionally depthwise: one filter per channel)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, depthwise: bool = False) -> None:
        super().__init__()
        self.padding = kernel // 2
        self.conv = nn.Conv2d(cin, cout, kernel, stride, groups=cin if depthwise else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(reflection_pad(x, self.padding))


class InvertedResidual(nn.Module):
    """1x1 expansion, depthwise 3x3, 1x1 projection, each followed by instance norm (ReLU after the first two),
    plus the identity: MobileNetV2's block with conditional instance norm."""

    def __init__(self, channels: int, expansion: int, num_styles: int) -> None:
        super().__init__()
        hidden = channels * expansion
        self.expand, self.in1 = nn.Conv2d(channels, hidden, 1), StyleInstanceNorm(hidden, num_styles)
        self.depthwise, self.in2 = _Conv(hidden, hidden, 3, depthwise=True), StyleInstanceNorm(hidden, num_styles)
        self.project, self.in3 = nn.Conv2d(hidden, channels, 1), StyleInstanceNorm(channels, num_styles)

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        y = F.relu(self.in1(self.expand(x), style))
        y = F.relu(self.in2(self.depthwise(y), style))
        return x + self.in3(self.project(y), style)


class LightNet(StyleNetwork):
    """(N, 3, H, W) in [0, 1] -> the same shape, for any H, W >= 1. ``channels``: the first layer's width (the
    encoder doubles it twice); ``num_residual`` inverted residual blocks of ``expansion``x width at a quarter
    of the resolution; a sigmoid output. ``upsample``: as ``TransformerNet``'s (bilinear for new training)."""

    arch = "light"
    limits = {"channels": (1, 256), "num_residual": (0, 64), "expansion": (1, 8)}
    choices = {"upsample": UPSAMPLING}
    downsampling = 4

    def __init__(self, channels: int = 16, num_residual: int = 5, expansion: int = 2, num_styles: int = 1,
                 upsample: str = "nearest") -> None:
        super().__init__()
        if num_styles < 1:
            raise ValueError(f"num_styles must be at least 1, got {num_styles}")
        self.upsample = upsample_mode(upsample)
        c1, c2, c3 = channels, 2 * channels, 4 * channels
        self.channels, self.num_residual, self.expansion = channels, num_residual, expansion
        self.num_styles = num_styles
        s = num_styles
        self.conv1, self.in1 = _Conv(3, c1, 5), StyleInstanceNorm(c1, s)
        self.conv2, self.in2 = _Conv(c1, c2, 3, stride=2), StyleInstanceNorm(c2, s)
        self.conv3, self.in3 = _Conv(c2, c3, 3, stride=2), StyleInstanceNorm(c3, s)
        self.res = nn.ModuleList(InvertedResidual(c3, expansion, s) for _ in range(num_residual))
        self.up1, self.in4 = _Conv(c3, c2, 3), StyleInstanceNorm(c2, s)
        self.up2, self.in5 = _Conv(c2, c1, 3), StyleInstanceNorm(c1, s)
        self.out = _Conv(c1, 3, 5)

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h < 5 or w < 5:  # padding needs more pixels than it pads, and instance norm more than one at 1/4
            x = F.pad(x, (0, max(0, 5 - w), 0, max(0, 5 - h)), mode="replicate")
        s = self.style_weights(style, x)
        y1 = F.relu(self.in1(self.conv1(x), s))
        y2 = F.relu(self.in2(self.conv2(y1), s))
        y = F.relu(self.in3(self.conv3(y2), s))
        for block in self.res:
            y = block(y, s)
        # Resize-convolution (upsample, then a convolution): no checkerboard (Odena et al. 2016).
        y = F.relu(self.in4(self.up1(upsample(y, y2.shape[-2:], self.upsample)), s))
        y = F.relu(self.in5(self.up2(upsample(y, y1.shape[-2:], self.upsample)), s))
        return torch.sigmoid(self.out(y)[..., :h, :w])

    @property
    def config(self) -> dict[str, int | str]:
        return self._recorded({"channels": self.channels, "num_residual": self.num_residual,
                               "expansion": self.expansion})
