"""A run's configuration as Hydra composes it: the styles it trains, its folder's name, and the checks
that turn a bad value into one line before anything runs (train.py, optimize.py)."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fastnst.core.errors import FastNSTError
from fastnst.core.terms import loss_keys

# Training runs from a source checkout: train.py and the conf/ a user edits sit beside fastnst/ (the wheel
# ships the library for stylizing; `pip install -e .` keeps this path right for training).
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


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


def starter_styles(conf_dir: Path = CONF_DIR) -> list[str]:
    """The styles with weights of their own (``conf/style/*.yaml`` but ``custom``): the starters' paintings."""
    return sorted(p.stem for p in (conf_dir / "style").glob("*.yaml") if p.stem != "custom")


def style_configs(cfg: DictConfig, conf_dir: Path = CONF_DIR) -> list[DictConfig]:
    """The styles a run trains: ``[cfg.style]``, or one per entry of ``styles`` (a multi-style run).
    An entry is a ``conf/style`` name (its image, size and weights) or an image path/URL (named after
    the file, with the size and weights of the ``style`` group's choice)."""
    names = cfg.get("styles")
    if not names:
        return [cfg.style]
    if isinstance(names, str):
        names = [names]
    out = []
    for entry in names:
        entry = str(entry)
        path = conf_dir / "style" / f"{entry}.yaml"
        if path.is_file():
            style = OmegaConf.load(path)
        elif Path(entry).suffix or entry.startswith(("http://", "https://", "builtin:")):
            stem = Path(entry.removeprefix("builtin:").split("?")[0]).stem
            style = OmegaConf.merge(cfg.style, {"name": stem, "image": entry})
        else:
            options = ", ".join(sorted(p.stem for p in (conf_dir / "style").glob("*.yaml")))
            raise FastNSTError(f"unknown style {entry!r} in styles: name a conf/style file ({options}) or give "
                               "an image path", param="styles")
        if OmegaConf.is_missing(style, "image"):
            raise FastNSTError(f"style {entry!r} has no image; list the image path itself in styles",
                               param="styles")
        out.append(style)
    seen = [str(s.name) for s in out]
    if len(set(seen)) != len(seen):
        raise FastNSTError(f"styles repeat a name: {seen}", param="styles")
    return out


def run_name(name: str | None, styles: Sequence[str] | None, style_name: str, init_from: str | None = None) -> str:
    """The run folder's name: ``name`` if given, ``multiN`` for N styles, ``<model>+<style>`` when
    adding a style to a trained model, else the style's."""
    if name:
        return str(name)
    if styles:
        return f"multi{len(styles)}"
    return f"{Path(init_from).stem}+{style_name}" if init_from else str(style_name)


# `hydra.run.dir` names the folder with it: outputs/<run name>/<time>.
OmegaConf.register_new_resolver("fastnst_run_name", run_name, replace=True)


# Library arguments (FastNSTError.param) as a user spells them on train.py/optimize.py command lines.
HYDRA_KEYS = {"root": "data.root", "cache": "data.cache", **{k: f"loss.{k}" for k in loss_keys()},
              "style_name": "style.name", "style_image": "style.image", "ckpt_path": "ckpt_path",
              "styles": "styles", "init_from": "init_from", "init_weights": "init_weights",
              "schedule": "scheduler", "max_steps": "trainer.max_steps",
              "content": "content", "device": "device", "steps": "gatys.steps", "lr": "gatys.lr",
              "init": "gatys.init", "optimizer": "gatys.optimizer", "scales": "gatys.scales"}
# `lr` of a training run is optimizer.lr, of a Gatys run gatys.lr: the entry point says which.


# The numeric knobs of each entry point: (kind, minimum, minimum allowed?). Checked before anything runs,
# so `loss.style_weight=abc` is one line, not a traceback after training has started.
# Every loss term's weights: any key a term declares as a weight (fastnst/core/terms), where the config has it.
LOSS_WEIGHTS = {f"loss.{k}": (float, 0, True) for k, key in loss_keys().items() if key.kind == "weight"}
TRAIN_NUMBERS = {"trainer.max_steps": (int, 1, True), "data.image_size": (int, 16, True),
                 "data.batch_size": (int, 1, True), "data.num_workers": (int, 0, True), "data.num_val": (int, 1, True),
                 "style.size": (int, 16, True), **LOSS_WEIGHTS,
                 "optimizer.lr": (float, 0, False),
                 "checkpoint_every_n_steps": (int, 1, True), "nan_check_every_n_steps": (int, 1, True),
                 "seed": (int, 0, True)}
GATYS_NUMBERS = {"gatys.steps": (int, 1, True), "gatys.lr": (float, 0, False), "image_size": (int, 8, True),
                 "style.size": (int, 16, True), **LOSS_WEIGHTS, "seed": (int, 0, True)}


def check_numbers(cfg: DictConfig, spec: dict[str, tuple[type, float, bool]]) -> None:
    """Raise FastNSTError naming the first key whose value is not a number of the right kind and range."""
    for key, (kind, low, inclusive) in spec.items():
        if key.startswith("loss.") and OmegaConf.select(cfg, key, default="absent",
                                                        throw_on_resolution_failure=False) == "absent":
            continue  # a term the config does not mention keeps its default
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=True)
        except Exception as err:  # an interpolation that cannot resolve
            raise FastNSTError(f"{key} cannot be read ({err.__class__.__name__})") from None
        number = isinstance(value, int | float) and not isinstance(value, bool)
        whole = isinstance(value, int) and not isinstance(value, bool)
        typed = whole if kind is int else number and math.isfinite(value)
        ok = typed and (value >= low if inclusive else value > low)
        if not ok:
            what = "a whole number" if kind is int else "a finite number"
            bound = f">= {low}" if inclusive else f"> {low}"
            raise FastNSTError(f"{key} must be {what} {bound}, got {value!r}")
