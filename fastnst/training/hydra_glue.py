"""Helpers for the Hydra entry points (train.py, optimize.py): config to objects, friendly errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from fastnst.core.errors import FastNSTError

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


# Library arguments (FastNSTError.param) as a user spells them on train.py/optimize.py command lines.
HYDRA_KEYS = {"root": "data.root", "cache": "data.cache", "vgg_weights": "loss.vgg_weights",
              "style_norm": "loss.style_norm", "content_weight": "loss.content_weight",
              "style_weight": "loss.style_weight", "tv_weight": "loss.tv_weight",
              "temporal_weight": "loss.temporal_weight", "style_name": "style.name", "ckpt_path": "ckpt_path",
              "content": "content", "device": "device", "steps": "gatys.steps", "lr": "gatys.lr",
              "init": "gatys.init", "optimizer": "gatys.optimizer", "scales": "gatys.scales"}
# `lr` of a training run is optimizer.lr, of a Gatys run gatys.lr: the entry point says which.


def guarded(fn: Callable[..., T], *args: object, keys: dict[str, str] | None = None) -> T:
    """Call ``fn``; a FastNSTError becomes ``error: <message> (set KEY=...)`` on stderr and exit
    code 2, and Ctrl-C exit code 130 without a traceback (``fn`` has saved what it had by then).
    The one place where train.py and optimize.py turn errors into exit codes."""
    try:
        return fn(*args)
    except FastNSTError as err:
        key = {**HYDRA_KEYS, **(keys or {})}.get(err.param or "")
        print(f"error: {err}" + (f" (set {key}=...)" if key else ""), file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
