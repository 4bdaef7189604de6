"""CPU speed kernels behind the paper's code: the same values as the plain PyTorch expressions they
replace, with hand-written backward passes that autograd takes slower (docs/speed.md has the figures).
Each is tested against autograd (tests/core/test_kernels.py)."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F


def self_product(features: torch.Tensor) -> torch.Tensor:
    """``F Fᵀ`` of (N, C, H, W) maps flattened to F (N, C, H·W), as a view in the map's own layout: for
    channels-last maps (the VGG's on a CPU) the gradient then comes back channels-last too, where an NCHW
    gradient would slow every ReLU backward behind it."""
    n, c, h, w = features.shape
    if c > 1 and features.is_contiguous(memory_format=torch.channels_last):
        return _SelfProduct.apply(features.permute(0, 2, 3, 1).reshape(n, h * w, c).transpose(1, 2))
    return _SelfProduct.apply(features.reshape(n, c, h * w))


class _SelfProduct(torch.autograd.Function):
    """``F Fᵀ`` with its gradient ``(G' + G'ᵀ) F`` in one product, in F's layout (autograd sees two operands:
    two products, a transposed copy and a sum)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, f: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(f)
        return torch.bmm(f, f.transpose(1, 2))

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (f,) = ctx.saved_tensors
        sym = (grad + grad.transpose(1, 2)).to(f.dtype)
        if f.stride(1) == 1:  # channels-last: (N, P, C) in memory, and so is the gradient
            return torch.bmm(f.transpose(1, 2), sym).transpose(1, 2)
        return torch.bmm(sym, f)


def reflection_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """``F.pad(x, (p, p, p, p), mode="reflect")`` in the input's dtype, also under autocast (which lists
    the pad as an fp32 op: a bf16 map would be cast up, padded and cast back). Padding only copies values,
    so any dtype is exact. With a gradient, the backward is two interior copies and sums on the border
    strips (PyTorch's is slower on a CPU: docs/speed.md)."""
    if p == 0:
        return x
    autocast = x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type)
    with torch.autocast(x.device.type, enabled=False) if autocast else contextlib.nullcontext():
        return _ReflectionPad.apply(x, p) if x.requires_grad else F.pad(x, (p, p, p, p), mode="reflect")


class _ReflectionPad(torch.autograd.Function):
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


def sample_rows(x: torch.Tensor, count: int) -> torch.Tensor:
    """(N, P, D) -> (N, min(P, count), D): ``count`` rows drawn at random (with replacement), the same for
    every image; an unbiased stand-in for all of them in a mean over rows (sorting every pixel's projections
    is a large part of a training step: docs/speed.md)."""
    if x.shape[1] <= count:
        return x
    return x[:, torch.randint(x.shape[1], (count,), device=x.device)]
