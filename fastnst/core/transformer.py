"""The image transformation network of Johnson et al. 2016 ("Perceptual Losses for
Real-Time Style Transfer and Super-Resolution"), as in pytorch/examples ``fast_neural_style``:
c9s1-32, d64, d128, five residual blocks of 128, two resize-convolution upsamplings, c9s1-3,
with instance normalisation (Ulyanov et al. 2016) and reflection padding.

With ``num_styles > 1`` every instance norm holds one learned (γ, β) pair per style and everything
else is shared: conditional instance normalisation (Dumoulin, Shlens & Kudlur 2017, "A Learned
Representation for Artistic Style"). A blend of styles is a convex combination of their (γ, β).
"""

from __future__ import annotations

import contextlib

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
        # Autocast lists reflection padding as an fp32 op: a bf16 map would be cast up, padded and cast back
        # down for the convolution, and again in the backward pass. Padding only copies values, so it is
        # exact in any dtype and runs in the input's (the network's bf16 forward and backward at 256 px, batch 4:
        # 1.23 -> 1.05 s).
        # Asked for CPU and CUDA maps only, the devices fastnst trains on; elsewhere autocast's policy stands.
        autocast = x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type)
        with torch.autocast(x.device.type, enabled=False) if autocast else contextlib.nullcontext():
            padding = self.pad.padding[0]
            padded = _ReflectionPad.apply(x, padding) if x.requires_grad and padding else self.pad(x)
        return self.conv(padded)


class _ReflectionPad(torch.autograd.Function):
    """``F.pad(x, (p, p, p, p), mode="reflect")`` with its backward written as two interior copies and sums
    on the border strips: PyTorch's reflection_pad2d_backward took 3-5x as long on a CPU (70 ms of a bf16
    training step at 256 px; docs/speed.md)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, p: int) -> torch.Tensor:
        ctx.p = p
        return F.pad(x, (p, p, p, p), mode="reflect")

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        p = ctx.p
        # The 2-D pad is a pad of the rows, then of the columns: undo the rows, then the columns. Row i of
        # the top pad is a copy of row p - i of the input, so its gradient lands there, flipped.
        rows = grad[..., p:-p, :].clone()
        rows[..., 1:p + 1, :] += grad[..., :p, :].flip(-2)
        rows[..., -p - 1:-1, :] += grad[..., -p:, :].flip(-2)
        out = rows[..., p:-p].clone()
        out[..., 1:p + 1] += rows[..., :p].flip(-1)
        out[..., -p - 1:-1] += rows[..., -p:].flip(-1)
        return out, None


class StyleInstanceNorm(nn.Module):
    """Instance norm with a learned affine map per style.

    One style: ``weight``/``bias`` of shape (C,), exactly ``nn.InstanceNorm2d(C, affine=True)`` (same
    state-dict keys, so single-style files of every version load). ``num_styles`` S > 1: shape (S, C),
    and ``forward`` takes per-image style weights (N, S) that mix the rows.
    ``fixed_stats``: (mean, var) of shape (C,) to normalise with instead of each image's own, set while
    tiling so that every tile is normalised as the whole image would be (``inference/tiling.py``).
    """

    def __init__(self, channels: int, num_styles: int = 1, eps: float = 1e-5) -> None:
        super().__init__()
        shape = (channels,) if num_styles == 1 else (num_styles, channels)
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))
        self.eps = eps
        self.fixed_stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        gamma, beta = self._affine(style)
        if self.fixed_stats is not None:
            mean, var = self.fixed_stats
            y = F.batch_norm(x, mean.to(x.dtype), var.to(x.dtype), training=False, eps=self.eps)
            return y * gamma.to(y.dtype)[..., None, None] + beta.to(y.dtype)[..., None, None]
        if gamma.dim() == 1:
            return F.instance_norm(x, weight=gamma, bias=beta, eps=self.eps)
        # Each image its own (γ, β): the batch folded into one image of N·C channels, so the per-image
        # affine runs inside the fused kernel (as a separate multiply-add it cost 10-30% of a forward pass).
        n, c = x.shape[:2]
        y = F.instance_norm(x.reshape(1, n * c, *x.shape[2:]), weight=gamma.reshape(-1).to(x.dtype),
                            bias=beta.reshape(-1).to(x.dtype), eps=self.eps)
        return y.reshape(x.shape)

    def _affine(self, style: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(γ, β): shape (C,) for one style, (N, C) mixed from the style weights (N, S) otherwise."""
        if self.weight.dim() == 1:
            return self.weight, self.bias
        if style is None:
            raise ValueError("a multi-style network needs style weights of shape (N, num_styles)")
        return style.to(self.weight.dtype) @ self.weight, style.to(self.bias.dtype) @ self.bias


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
    (pytorch/examples' network, whose output is in 0-255 units; ``stylize`` clamps it). The sigmoid
    bounds how far one Adam step moves the image, so training starts smoothly (docs/training.md has
    the measurements).

    ``num_styles``: how many styles the network paints (conditional instance norm); ``forward`` then
    takes ``style``, blend weights of shape (S,) or (N, S) (default: the first style).
    """

    def __init__(self, channels: int = 32, num_residual: int = 5, output: str = "sigmoid",
                 num_styles: int = 1) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if num_styles < 1:
            raise ValueError(f"num_styles must be at least 1, got {num_styles}")
        c1, c2, c3 = channels, 2 * channels, 4 * channels
        self.channels, self.num_residual, self.output, self.num_styles = channels, num_residual, output, num_styles
        s = num_styles
        self.conv1, self.in1 = ConvLayer(3, c1, 9), StyleInstanceNorm(c1, s)
        self.conv2, self.in2 = ConvLayer(c1, c2, 3, stride=2), StyleInstanceNorm(c2, s)
        self.conv3, self.in3 = ConvLayer(c2, c3, 3, stride=2), StyleInstanceNorm(c3, s)
        self.res = nn.ModuleList(ResidualBlock(c3, s) for _ in range(num_residual))
        self.deconv1, self.in4 = UpsampleConvLayer(c3, c2, 3), StyleInstanceNorm(c2, s)
        self.deconv2, self.in5 = UpsampleConvLayer(c2, c1, 3), StyleInstanceNorm(c1, s)
        self.deconv3 = ConvLayer(c1, 3, 9)

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        # Reflection padding needs at least pad+1 pixels; tiny inputs are padded up and cropped back.
        h, w = x.shape[-2:]
        if h < 5 or w < 5:
            x = F.pad(x, (0, max(0, 5 - w), 0, max(0, 5 - h)), mode="replicate")
        s = self._style_weights(style, x)
        y1 = F.relu(self.in1(self.conv1(x), s))
        y2 = F.relu(self.in2(self.conv2(y1), s))
        y = F.relu(self.in3(self.conv3(y2), s))
        for block in self.res:
            y = block(y, s)
        y = F.relu(self.in4(self.deconv1(y, y2.shape[-2:]), s))
        y = F.relu(self.in5(self.deconv2(y, y1.shape[-2:]), s))
        y = self.deconv3(y)[..., :h, :w]
        return torch.sigmoid(y) if self.output == "sigmoid" else y

    def _style_weights(self, style: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
        """(N, S) blend weights for a multi-style network, None for a single-style one."""
        if self.num_styles == 1:
            return None
        if style is None:
            style = F.one_hot(torch.zeros((), dtype=torch.long, device=x.device), self.num_styles)
        if style.shape[-1] != self.num_styles or style.dim() > 2:
            raise ValueError(f"style weights must have shape (N, {self.num_styles}) or ({self.num_styles},), "
                             f"got {tuple(style.shape)}")
        return style.to(x.device, torch.float32).expand(x.shape[0], -1)

    @property
    def config(self) -> dict[str, int | str]:
        """Constructor arguments, stored in model files so they rebuild the same network.
        ``num_styles`` appears only for multi-style networks: single-style files stay as they were."""
        config: dict[str, int | str] = {"channels": self.channels, "num_residual": self.num_residual,
                                        "output": self.output}
        return config if self.num_styles == 1 else {**config, "num_styles": self.num_styles}

    def with_new_style(self) -> TransformerNet:
        """A copy with one more style, for teaching a trained network a new style: the shared weights
        and the existing styles' (γ, β) are copied; the new row starts at their mean (for a
        single-style network: at its one style), a stylization to fine-tune from, not from noise."""
        grown = TransformerNet(self.channels, self.num_residual, self.output, self.num_styles + 1)
        state = {}
        for key, value in self.state_dict().items():
            target = grown.state_dict()[key]
            if target.shape != value.shape:  # a norm's weight/bias: (C,) or (S, C) -> (S + 1, C)
                rows = value.reshape(-1, value.shape[-1])
                value = torch.cat([rows, rows.mean(dim=0, keepdim=True)])
            state[key] = value.detach().clone()
        grown.load_state_dict(state)
        return grown

    def train_only_styles(self, indices: list[int]) -> None:
        """Freeze everything except the (γ, β) rows of styles ``indices``: a new style taught to a
        trained network by its norm parameters alone, the shared convolutions kept (Dumoulin et al.
        2017). The other rows get zero gradients (an optimizer with weight decay would still move them)."""
        if self.num_styles == 1:
            raise ValueError("train_only_styles needs a multi-style network (see with_new_style)")
        mask = torch.zeros(self.num_styles, 1)
        mask[indices] = 1.0
        for module in self.modules():
            for p in module.parameters(recurse=False):
                p.requires_grad_(isinstance(module, StyleInstanceNorm))
            if isinstance(module, StyleInstanceNorm):
                for p in (module.weight, module.bias):
                    p.register_hook(lambda grad: grad * mask.to(grad))
