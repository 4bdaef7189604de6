"""Running the network on images too large for memory: overlapping tiles, feathered together,
with instance-norm statistics shared by every tile.

Instance norm normalises by each image's own channel statistics, so tiles run independently would
each get their own contrast and colour cast and the seams would show. Here the statistics of
every norm layer are measured once on a (downscaled) pass over the whole image and imposed on
every tile; an image small enough for that pass gets exactly the untiled statistics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from fastnst.core.networks import StyleInstanceNorm, StyleNetwork

Stats = list[tuple[torch.Tensor, torch.Tensor]]


def _norms(network: nn.Module) -> list[StyleInstanceNorm]:
    if isinstance(network, StyleNetwork):
        return network.norm_layers()
    return [m for m in network.modules() if isinstance(m, StyleInstanceNorm)]


def measure_norm_stats(network: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                       modules: nn.Module | None = None) -> Stats:
    """Per-layer (mean, var) of every instance-norm input when ``network`` runs on ``x`` (1, 3, H, W).
    ``modules``: the module holding the norm layers, when ``network`` is a closure around it
    (a multi-style network called with its style weights)."""
    stats: Stats = []

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        h = args[0].float()
        stats.append((h.mean(dim=(0, 2, 3)), h.var(dim=(0, 2, 3), unbiased=False)))

    handles = [m.register_forward_pre_hook(hook) for m in _norms(modules or network)]
    try:
        network(x)
    finally:
        for h in handles:
            h.remove()
    return stats


@contextlib.contextmanager
def fixed_norm_stats(network: nn.Module, stats: Stats) -> Iterator[None]:
    """Within the block, every instance norm normalises with ``stats`` instead of its input's."""
    norms = _norms(network)
    for module, pair in zip(norms, stats, strict=True):
        module.fixed_stats = pair
    try:
        yield
    finally:
        for module in norms:
            module.fixed_stats = None


# A network that downsamples by k with strided convolutions (its `downsampling`): a crop that starts off that
# grid sees different pixels than the whole image does at the same place, so windows start on multiples of k.
STRIDE = 4


def _starts(length: int, tile: int, overlap: int, grid: int = STRIDE) -> list[int]:
    if length <= tile:
        return [0]
    step = max(grid, (tile - overlap) // grid * grid)
    starts = list(range(0, length - tile, step))
    return [*starts, (length - tile) // grid * grid]


def _ramp(length: int, before: int, after: int) -> torch.Tensor:
    """1-D weights: rising over ``before`` pixels, falling over ``after``, 1 between (never 0)."""
    w = torch.ones(length)
    if before:
        w[:before] = torch.linspace(0, 1, before + 2)[1:-1]
    if after:
        w[length - after:] = torch.minimum(w[length - after:], torch.linspace(1, 0, after + 2)[1:-1])
    return w


def run_tiled(network: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, overlap: int,
              device: torch.device, dtype: torch.dtype, check: Callable[[], None] | None = None,
              grid: int = STRIDE) -> torch.Tensor:
    """Apply ``network`` to ``x`` (1, 3, H, W, on any device) tile by tile; returns (1, 3, H, W)
    float32 on x's device. Each tile is run on up to (tile + 2·overlap)² px. Norm statistics must
    already be fixed (``fixed_norm_stats``). ``check`` is called before each tile: an exception it
    raises abandons the image (the web app stops work for a client that has gone)."""
    _, _, h, w = x.shape
    overlap = min(overlap, tile // 2)
    out = torch.zeros(1, 3, h, w, dtype=torch.float32, device=x.device)
    weight = torch.zeros(1, 1, h, w, dtype=torch.float32, device=x.device)
    rows, cols = _starts(h, tile, overlap, grid), _starts(w, tile, overlap, grid)
    for top in rows:
        for left in cols:
            if check is not None:
                check()
            # The last tile of a row/column runs to the edge (up to grid - 1 px over `tile`).
            th = h - top if top == rows[-1] else min(tile, h - top)
            tw = w - left if left == cols[-1] else min(tile, w - left)
            # Run each tile with `overlap` px of real context around it (where the image has it), so
            # its borders see their neighbours instead of padding; the context is cropped off again.
            t0 = max(0, top - overlap) // grid * grid
            l0 = max(0, left - overlap) // grid * grid
            t1, l1 = min(h, top + th + overlap), min(w, left + tw + overlap)
            piece = x[..., t0:t1, l0:l1].to(device=device, dtype=dtype)
            y = network(piece).float().to(x.device)[..., top - t0:top - t0 + th, left - l0:left - l0 + tw]
            wy = _ramp(th, overlap if top > 0 else 0, overlap if top + th < h else 0)
            wx = _ramp(tw, overlap if left > 0 else 0, overlap if left + tw < w else 0)
            mask = (wy[:, None] * wx[None, :]).to(x.device)
            out[..., top:top + th, left:left + tw] += y * mask
            weight[..., top:top + th, left:left + tw] += mask
    return out / weight
