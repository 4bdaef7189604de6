"""Johnson et al.'s network under its old import path (model configs and code written before networks were
parts, fastnst/core/networks, keep working)."""

from fastnst.core.networks.base import StyleInstanceNorm
from fastnst.core.networks.johnson import OUTPUTS, ConvLayer, ResidualBlock, TransformerNet, UpsampleConvLayer

__all__ = ["OUTPUTS", "ConvLayer", "ResidualBlock", "StyleInstanceNorm", "TransformerNet", "UpsampleConvLayer"]
