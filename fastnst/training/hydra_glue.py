"""Helpers for the Hydra entry points (train.py, optimize.py): config to objects, friendly errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from omegaconf import DictConfig

from fastnst.core.errors import FastNSTError
from fastnst.core.losses import PerceptualLoss
from fastnst.core.vgg import VGGFeatures

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
T = TypeVar("T")


def check_group_choices(argv: Sequence[str], groups: Sequence[str], conf_dir: Path = CONF_DIR) -> None:
    """Exit with one line when ``group=name`` names no ``conf/group/name.yaml``.

    Hydra's own message for this spans a dozen lines and mentions HYDRA_FULL_ERROR."""
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep or key not in groups or value in ("", "null"):
            continue
        for choice in value.split(","):  # multirun sweeps: style=a,b
            if not (conf_dir / key / f"{choice}.yaml").is_file():
                options = ", ".join(sorted(p.stem for p in (conf_dir / key).glob("*.yaml")))
                print(f"error: unknown {key} {choice!r}; choose one of: {options}", file=sys.stderr)
                sys.exit(2)


def guarded(fn: Callable[..., T], *args: object) -> T:
    """Call ``fn``; a FastNSTError becomes ``error: <message>`` on stderr and exit code 2, and
    Ctrl-C exit code 130 without a traceback (``fn`` has saved what it had by then)."""
    try:
        return fn(*args)
    except FastNSTError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def build_loss(cfg: DictConfig, seed: int = 0) -> PerceptualLoss:
    """The PerceptualLoss of a ``loss`` config group (shared by train.py and optimize.py)."""
    layers = [*cfg.content_layers, *cfg.style_layers]
    weights = str(cfg.vgg_weights)
    if weights == "random":
        log.warning("RANDOM VGG WEIGHTS: results will not look like the style (tests and smoke runs only)")
    vgg = VGGFeatures(cfg.vgg, layers, weights=weights, seed=seed)
    return PerceptualLoss(vgg, dict(cfg.content_layers), dict(cfg.style_layers), cfg.content_weight,
                          cfg.style_weight, cfg.tv_weight)
