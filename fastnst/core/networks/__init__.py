"""The stylizing networks, one module each: every ``StyleNetwork`` subclass with an ``arch`` defined in a
module of this package can be trained (``conf/model``), saved, reloaded, tiled, exported and served.
docs/extending.md shows how to add one."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from fastnst.core.errors import FastNSTError
from fastnst.core.networks.base import StyleInstanceNorm, StyleNetwork

__all__ = ["StyleInstanceNorm", "StyleNetwork", "architectures", "network_class", "DEFAULT_ARCH"]
DEFAULT_ARCH = "johnson"  # what files without an `arch` (fastnst 0.x before networks were parts) hold


@cache
def architectures() -> dict[str, type[StyleNetwork]]:
    """Every network by its ``arch`` name."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    found: dict[str, type[StyleNetwork]] = {}
    for cls in _subclasses(StyleNetwork):
        if cls.__module__.startswith(f"{__name__}.") and "arch" in vars(cls):
            if cls.arch in found:
                raise RuntimeError(f"two networks are called {cls.arch!r}: {found[cls.arch]} and {cls}")
            found[cls.arch] = cls
    return found


def _subclasses(cls: type) -> list[type]:
    return [s for c in cls.__subclasses__() for s in (c, *_subclasses(c))]


def network_class(arch: object) -> type[StyleNetwork]:
    """The class of ``arch``, or FastNSTError naming the ones this version knows."""
    known = architectures()
    if not isinstance(arch, str) or arch not in known:
        raise FastNSTError(f"unknown network architecture {str(arch)[:40]!r} (this fastnst knows "
                           f"{', '.join(sorted(known))}; a newer fastnst may know it)")
    return known[arch]
