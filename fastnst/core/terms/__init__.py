"""The loss terms, one module each; every ``Term`` subclass defined in a module of this package is part of
``PerceptualLoss``, in ``order``. docs/extending.md shows how to add one."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

from fastnst.core.errors import FastNSTError
from fastnst.core.terms.base import Key, LossInputs, Term

__all__ = ["Key", "LossInputs", "Term", "all_terms", "loss_keys", "check_spec", "VGG_KEYS"]

# The loss network's own keys, beside the terms' (conf/loss/*.yaml; a model file's `loss` metadata).
VGG_KEYS = {"vgg": Key("vgg16", "choice", ("vgg16", "vgg19")), "vgg_weights": Key("imagenet", "text")}


@cache
def all_terms() -> tuple[type[Term], ...]:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    found = [t for t in _subclasses(Term) if t.__module__.startswith(f"{__name__}.") and "name" in vars(t)]
    terms = tuple(sorted(found, key=lambda t: (t.order, t.name)))
    keys = [k for t in terms for k in t.keys]
    if len(set(keys)) != len(keys) or len({t.name for t in terms}) != len(terms):
        raise RuntimeError(f"two loss terms share a name or a config key: {keys}")
    return terms


def _subclasses(cls: type) -> list[type]:
    return [s for c in cls.__subclasses__() for s in (c, *_subclasses(c))]


def loss_keys() -> dict[str, Key]:
    """Every key a loss spec may hold: the VGG's, then each term's, in order."""
    return {**VGG_KEYS, **{k: v for t in all_terms() for k, v in t.keys.items()}}


def check_spec(spec: Any, where: str = "loss") -> dict[str, Any]:
    """A model file's ``loss`` metadata, type- and range-checked key by key (keys this version does not know
    are kept as they are: a newer file's extra term is not an error here)."""
    if not isinstance(spec, dict):
        raise FastNSTError(f"{where} must be a mapping, got {type(spec).__name__}")
    keys = loss_keys()
    checked = {}
    for name, value in spec.items():
        key = keys.get(name)
        try:
            checked[name] = value if key is None else key.check(name, value)
        except FastNSTError as err:
            raise FastNSTError(f"{where}: {err}", param=err.param) from None
    return checked
