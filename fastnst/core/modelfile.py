"""Stylizer files: one ``.safetensors`` holding the network weights plus JSON metadata, described by
one schema (``ModelMeta``) that training writes, the loader checks and ``fastnst info`` shows.

Reading a model never executes code from it: safetensors holds only tensors and strings, and
Lightning ``.ckpt`` files are read with ``torch.load(weights_only=True)``. The metadata is untrusted
input: every field is type- and range-checked on load, and the style name (which ends up in output
file names) must be a plain name, never a path.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fastnst.core.errors import FastNSTError
from fastnst.core.images import atomic_path
from fastnst.core.networks import DEFAULT_ARCH, StyleNetwork, network_class
from fastnst.core.terms import check_spec
from fastnst.core.version import __version__

FORMAT = "fastnst.stylizer"
FORMAT_VERSION = 2  # 2: temporal_weight moved into `loss`, `description` and network `output` added; 1 loads
# (multi-style files add `styles` and network `num_styles`; readers that ignore them refuse the weights' shapes)
# A name that is safe as part of a file name on every OS: no separators, no leading dot.
STYLE_NAME = re.compile(r"\w[\w .+-]{0,63}")  # whole names only (fullmatch: `$` would let a final newline in)


def plain_name(name: object) -> bool:
    """A style name that is safe in a file name and unambiguous in ``--style`` (``a..b`` is a morph)."""
    return isinstance(name, str) and STYLE_NAME.fullmatch(name) is not None and ".." not in name
STARTER_DIR = Path(__file__).resolve().parent.parent / "assets" / "models"


def starter_models() -> dict[str, Path]:
    """The trained stylizers that ship with fastnst, by name (``fastnst models`` lists them)."""
    return {p.stem: p for p in sorted(STARTER_DIR.glob("*.safetensors"))}


def is_starter(path: Path) -> bool:
    """Whether ``path`` is one of the installed starter models (never write beside those)."""
    return path.resolve().parent == STARTER_DIR.resolve()


def resolve_model(model: str | Path) -> Path:
    """A model file's path, or the name of a starter model (``starry_night``). A file that exists
    wins over a starter of the same name."""
    path = Path(model).expanduser()
    if path.exists() or path.suffix:
        return path
    starters = starter_models()
    if str(model) in starters:
        return starters[str(model)]
    names = ", ".join(starters) or "none installed"
    raise FastNSTError(f"model file not found: {path} (and no starter model of that name; starters: {names})",
                       param="model")


@dataclass(frozen=True)
class ModelMeta:
    """What a stylizer file says about itself. ``arch``: which network (fastnst/core/networks; files from
    before it was recorded hold Johnson et al.'s); ``network``: its constructor arguments, within the limits
    it declares (they bound what a file can make us allocate); ``loss``: ``PerceptualLoss.spec`` (VGG,
    layers, weights), each key checked as its loss term declares; ``steps``/``image_size``: how long and
    at what crop size it was trained; ``description``: free text, e.g. what it was trained on.
    ``styles``: the style names of a multi-style network, in the order of its (γ, β) rows
    (``style_name`` then names the model as a whole), and ``style_images`` where each came from;
    both empty for a single-style one. ``default_style``: the style used when none is asked for (empty: the
    first); ``fastnst add-style`` sets it to the painting it added, so the file paints that painting."""

    style_name: str = "styled"
    arch: str = DEFAULT_ARCH
    style_image: str = ""
    style_sha256: str = ""
    style_size: int | None = None
    network: dict[str, int | str] = field(default_factory=dict)
    loss: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None
    steps: int | None = None
    description: str = ""
    styles: list[str] = field(default_factory=list)
    style_images: list[str] = field(default_factory=list)
    default_style: str = ""
    fastnst_version: str = __version__
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        _check_types(self)
        if not plain_name(self.style_name):
            raise FastNSTError(f"style name {self.style_name[:80]!r} is not a plain name (letters, digits, "
                               "space, _ . + -, at most 64 characters, no path separators, no '..')",
                               param="style_name")
        try:
            network_class(self.arch).check_config(self.network)
        except ValueError as err:
            raise FastNSTError(str(err)) from None
        object.__setattr__(self, "loss", check_spec(self.loss, "model metadata loss"))
        for name in self.styles:
            if not plain_name(name):
                raise FastNSTError(f"style name {str(name)[:80]!r} is not a plain name", param="style_name")
        if self.style_images and len(self.style_images) != len(self.styles):
            raise FastNSTError(f"{len(self.style_images)} style images for {len(self.styles)} styles")
        if len(set(self.styles)) != len(self.styles):
            raise FastNSTError(f"style names repeat: {self.styles}", param="style_name")
        if self.default_style and self.default_style not in self.styles:
            raise FastNSTError(f"default style {self.default_style[:80]!r} is not one of the model's styles",
                               param="style_name")
        if self.network and len(self.style_names) != self.network.get("num_styles", 1):
            raise FastNSTError(f"{len(self.style_names)} style name(s) for a network of "
                               f"{self.network.get('num_styles', 1)} styles")

    @property
    def style_names(self) -> list[str]:
        """The styles this model paints, in order (one for a single-style model)."""
        return list(self.styles) or [self.style_name]

    @property
    def style_by_default(self) -> str:
        """The style the file paints when none is asked for: ``default_style``, else the first."""
        return self.default_style or self.style_names[0]

    def image_of(self, style: str) -> str:
        """Where style ``style`` came from (a path, URL or ``builtin:NAME``)."""
        if not self.styles:
            return self.style_image
        images = self.style_images or [""] * len(self.styles)
        return images[self.styles.index(style)]

    @property
    def temporal_weight(self) -> float:
        return float(self.loss.get("temporal_weight", 0.0))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelMeta:
        """From a file's metadata (any version): unknown keys are ignored, bad values refused."""
        raw = dict(raw)
        if "temporal_weight" in raw and isinstance(raw.get("loss"), dict):  # version 1 kept it at the top
            raw["loss"] = {"temporal_weight": raw["temporal_weight"], **raw["loss"]}
        if isinstance(raw.get("network"), dict) and "output" not in raw["network"] \
                and raw.get("arch", DEFAULT_ARCH) == DEFAULT_ARCH:  # version 1: unbounded
            raw["network"] = {**raw["network"], "output": "raw"}
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known and v is not None})


def _check_types(meta: ModelMeta) -> None:
    expected = {"style_name": str, "arch": str, "style_image": str, "style_sha256": str,
                "style_size": (int, type(None)),
                "network": dict, "loss": dict, "image_size": (int, type(None)), "steps": (int, type(None)),
                "description": str, "styles": list, "style_images": list,
                "default_style": str, "fastnst_version": str, "format_version": int}
    for name, kind in expected.items():
        value = getattr(meta, name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise FastNSTError(f"model metadata {name} has the wrong type ({type(value).__name__})")
        if isinstance(value, str) and len(value) > 4096:
            raise FastNSTError(f"model metadata {name} is implausibly long ({len(value)} characters)")


SIGNATURES = "style_signatures"  # the one tensor in a file that is not the network's (fastnst/core/signatures.py)


def save_stylizer(network: StyleNetwork, path: Path | str, meta: ModelMeta = ModelMeta(),
                  dtype: torch.dtype = torch.float32, signatures: torch.Tensor | None = None) -> Path:
    """Write weights and metadata atomically; ``meta.arch`` and ``meta.network`` are taken from ``network``.
    ``dtype=torch.float16`` halves the file (the network runs in fp32 after loading). ``signatures``: (S, D),
    one row per style (``core/signatures.py``), kept beside the weights."""
    path = Path(path)
    if signatures is not None and signatures.shape[0] != network.num_styles:
        raise ValueError(f"{signatures.shape[0]} style signatures for a network of {network.num_styles} styles")
    meta = dataclasses.replace(meta, arch=network.arch, network=network.config, fastnst_version=__version__,
                               format_version=FORMAT_VERSION)
    header = {"format": FORMAT, "architecture": type(network).__name__, **meta.to_dict()}
    from safetensors.torch import save_file

    tensors = {k: v.detach().to(dtype).contiguous().cpu() for k, v in network.state_dict().items()}
    if signatures is not None:
        tensors[SIGNATURES] = signatures.detach().to(torch.float16).contiguous().cpu()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={k: json.dumps(v) for k, v in header.items()})
    return path


def read_metadata(path: Path | str) -> ModelMeta:
    """The metadata of a stylizer file (``.safetensors`` or ``.ckpt``)."""
    return _read(Path(path))[1]


def read_signatures(path: Path | str) -> torch.Tensor | None:
    """The file's style signatures, (S, D) float32 with one finite row per style, or None where it has none
    (every file but a multi-style base's) or they do not fit its styles."""
    state, meta = _read(Path(path), keep_signatures=True)
    found = state.get(SIGNATURES)
    if found is None or found.dim() != 2 or found.shape[0] != len(meta.style_names) \
            or not torch.isfinite(found).all():
        return None
    return found.float()


def load_network(path: Path | str) -> tuple[StyleNetwork, ModelMeta]:
    """Rebuild the network a file describes, on the CPU, in fp32, in eval mode. Raises FastNSTError
    for a missing, corrupt or foreign file, weights that do not fit the declared architecture, or
    weights that are not finite (they would stylize every photo to black)."""
    path = Path(path)
    state, meta = _read(path)
    try:
        # Shapes first, on the meta device (no memory): a 1 KB file whose metadata declares a huge
        # network must be refused before that network is allocated (it took 5.7 GB to refuse one).
        cls = network_class(meta.arch)
        with torch.device("meta"):
            expected = {k: v.shape for k, v in cls(**meta.network).state_dict().items()}
        if expected != {k: v.shape for k, v in state.items()}:
            raise RuntimeError
        network = cls(**meta.network)
        network.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except (TypeError, KeyError, ValueError, RuntimeError):
        raise FastNSTError(f"{path}: weights do not match a {meta.arch} network {meta.network}") from None
    if not all(torch.isfinite(p).all() for p in network.parameters()):
        raise FastNSTError(f"{path}: the weights hold NaN or infinite values (a diverged training run?)")
    return network.eval(), meta


def _read(path: Path, keep_signatures: bool = False) -> tuple[dict[str, torch.Tensor], ModelMeta]:
    if path.is_dir():
        raise FastNSTError(f"{path} is a folder, not a model file")
    if not path.is_file():
        raise FastNSTError(f"model file not found: {path}")
    if path.suffix == ".ckpt":
        return _read_checkpoint(path)
    from safetensors import SafetensorError, safe_open  # here, so benchmarks run without it

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys() if keep_signatures or k != SIGNATURES}
        header = {k: json.loads(v) for k, v in raw.items()}
    except (SafetensorError, OSError, ValueError) as err:
        raise FastNSTError(f"{path} is not a readable .safetensors model ({err})") from None
    if header.get("format") != FORMAT:
        raise FastNSTError(f"{path} is a .safetensors file but not a fastnst stylizer")
    version = header.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise FastNSTError(f"{path} was written by a newer fastnst ({header.get('fastnst_version')}); upgrade")
    return state, _meta(path, header)


def _read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], ModelMeta]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle.UnpicklingError for anything outside the allow-list
        raise FastNSTError(f"{path} is not a loadable checkpoint; only plain tensors and values are "
                           f"accepted ({str(err).splitlines()[0][:120]})") from None
    hparams = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    if not isinstance(hparams, dict) or "network" not in hparams or "state_dict" not in ckpt:
        raise FastNSTError(f"{path} is not a fastnst training checkpoint")
    state = {k.removeprefix("network."): v for k, v in ckpt["state_dict"].items() if k.startswith("network.")}
    return state, _meta(path, {**hparams, "steps": ckpt.get("global_step")})


def _meta(path: Path, raw: dict[str, Any]) -> ModelMeta:
    try:
        meta = ModelMeta.from_dict(raw)
    except FastNSTError as err:
        raise FastNSTError(f"{path}: {err}") from None
    for key, value in meta.loss.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise FastNSTError(f"{path}: loss {key} is not finite")
    return meta
