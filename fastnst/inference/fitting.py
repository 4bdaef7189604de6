"""Any painting as a style in minutes: fit its (γ, β) on a trained multi-style network.

Only the new style's instance-norm rows train (1,600 numbers on ``johnson_small``); the convolutions and
the other styles stay as they are (Dumoulin et al. 2017). A plain PyTorch loop, no Lightning, so the
command line and the web app share it. The loss is the base model's own (its file records it), on the
ImageNet VGG16. Results are cached by the painting's and the base's hashes and the recipe, so the second
request for a painting is instant; the cache entry is written atomically under a lock, so two fits of one
painting at once make one entry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from fastnst.core import signatures, styles
from fastnst.core.cache import cache_dir
from fastnst.core.crops import random_crop
from fastnst.core.device import bf16_preferred, resolve_device
from fastnst.core.errors import FastNSTError
from fastnst.core.images import MAX_IMAGE_PIXELS, find_images, fit_long_side, open_image, to_pil, to_tensor
from fastnst.core.locks import file_lock
from fastnst.core.losses import PerceptualLoss
from fastnst.core.modelfile import ModelMeta, load_network, read_metadata, read_signatures, resolve_model, save_stylizer
from fastnst.core.networks import StyleNetwork
from fastnst.core.styles import sha256_file
from fastnst.core.terms import VGG_KEYS, all_terms
from fastnst.inference.batch import unique_name

log = logging.getLogger(__name__)

DEFAULT_BASE = "multistyle"
PHOTO_DIR = Path(__file__).resolve().parent.parent / "assets" / "photos"  # public-domain / CC0 photos
MIN_PAINTING_SIDE = 64
MAX_FIT_STEPS = 100_000  # (γ, β) of one style: far past any gain; bounds a typo's hours


def _cosine(done: int, steps: int, floor: float = 0.1) -> float:
    """The learning rate's factor after ``done`` of ``steps``: half a cosine from 1 down to ``floor``, so the
    last steps settle instead of moving the style by a few per cent either way (as a constant rate does)."""
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(done, steps) / max(steps, 1)))


SCHEDULES: dict[str, Callable[[int, int], float]] = {"constant": lambda done, steps: 1.0, "cosine": _cosine}


@dataclass(frozen=True)
class FitOptions:
    """How a painting is fitted. ``photos``: a folder of training photos (default: the few that ship with
    fastnst, so it works offline); ``vgg_weights``: the loss network (``imagenet``: torchvision's, cached
    after the first download, or a local file)."""

    steps: int = 100  # on multistyle (the joint base) below Magenta's held-out loss from 25 steps (docs/quality.md)
    lr: float = 2e-2
    # One 256 px crop a step (the pixels of four 128 px crops): the instance norm sees a picture's worth of
    # context and mid-scale structure fits: 6-15% lower held-out loss on five unseen paintings, and Gauguin's
    # misses at relu3_3/relu4_3 gone (docs/quality.md, "Fits on 256 px crops").
    image_size: int = 256
    batch_size: int = 1
    style_size: int = 512
    photos: Path | None = None
    vgg_weights: str = "imagenet"
    device: str = "auto"
    seed: int = 0
    content_weight: float | None = 0.6  # None: the base model's (1 for the starters). 0.6 met more of the judge's
    # goals on five unseen paintings at no visible cost to the photo (content ≤ 1.03x Magenta's; docs/quality.md)
    start: str = "nearest"  # the new style's first (γ, β): a mix of the known styles "nearest" the painting (by
    # their signatures; docs/quality.md, "Fits that start close"), or their "mean"
    schedule: str = "constant"  # "cosine": the rate falls to a tenth by the last step; at 100 steps it did not
    # pay (two of three paintings worse; docs/quality.md)

    def __post_init__(self) -> None:
        checks = {"steps": 1 <= self.steps <= MAX_FIT_STEPS, "lr": 0 < self.lr <= 1,
                  "start": self.start in ("mean", "nearest"), "schedule": self.schedule in SCHEDULES,
                  "image_size": 32 <= self.image_size <= 1024,
                  "batch_size": 1 <= self.batch_size <= 64, "style_size": 64 <= self.style_size <= 2048,
                  "content_weight": self.content_weight is None or 0 <= self.content_weight < 1e6}
        for name, ok in checks.items():
            if not ok:
                raise FastNSTError(f"{name} is out of range: {getattr(self, name)!r}", param=name)

    def recipe(self) -> dict[str, object]:
        """What changes the result (the cache key), as plain values; the device does not."""
        return {"steps": self.steps, "lr": self.lr, "content_weight": self.content_weight,
                **({"start": self.start} if self.start != "mean" else {}),  # old entries keep their keys
                **({"schedule": self.schedule} if self.schedule != "constant" else {}),
                "image_size": self.image_size, "batch_size": self.batch_size,
                "style_size": self.style_size, "seed": self.seed, "vgg_weights": self.vgg_weights,
                "photos": _folder_digest(self.photos or PHOTO_DIR)}


@dataclass(frozen=True)
class FitProgress:
    step: int
    steps: int
    loss: float
    seconds: float  # since the first step began (loading excluded)

    @property
    def eta(self) -> float:
        """Seconds left, from the mean step time so far."""
        return self.seconds / max(self.step, 1) * (self.steps - self.step)


class Painter:
    """The network being fitted, as it is now: ``painter(image)`` paints a small picture (a live preview)."""

    def __init__(self, network: StyleNetwork, style: torch.Tensor) -> None:
        self.network, self.style = network, style

    @torch.no_grad()
    def __call__(self, image: Image.Image) -> Image.Image:
        x = to_tensor(image).to(self.style.device)
        return to_pil(self.network(x, self.style[None]))


class FitCancelled(Exception):
    """The fit was stopped by its ``cancel`` check; nothing was written."""


def read_painting(path: Path, size: int = FitOptions.style_size, max_pixels: int | None = MAX_IMAGE_PIXELS
                  ) -> tuple[torch.Tensor, list[str]]:
    """The painting at ``size`` px long (fastnst.core.styles.read_painting), refused under 64 px a side."""
    return styles.read_painting(path, size, max_pixels, min_side=MIN_PAINTING_SIDE)


def style_name(path: Path) -> str:
    """A plain style name from a file name: ``My Painting (1).jpg`` -> ``My_Painting_1``."""
    name = re.sub(r"[^\w+-]+", "_", path.stem).strip("_.")[:48]
    return name or "painting"


def fit_style(painting: Path, base: str | Path = DEFAULT_BASE, options: FitOptions = FitOptions(),
              name: str | None = None, on_progress: Callable[[FitProgress, Painter], None] | None = None,
              cancel: Callable[[], bool] | None = None, image: torch.Tensor | None = None
              ) -> tuple[StyleNetwork, ModelMeta]:
    """``base`` grown by one style fitted to ``painting``; returns the network (on the CPU) and its
    metadata. ``on_progress`` hears every step; ``cancel`` returning True stops it (FitCancelled).
    ``image``: the painting as ``read_painting`` gave it, when the caller has read it already."""
    if image is None:
        image, notes = read_painting(painting, options.style_size)
        for note in notes:  # callers show them (the CLI prints them before fitting); logged for the others
            log.info("%s", note)
    base_path = resolve_model(base)
    network, meta = load_network(base_path)
    names = meta.style_names
    name = unique_name(name or style_name(painting), names.__contains__)
    device = resolve_device(options.device)
    torch.manual_seed(options.seed)
    grown = network.with_new_style().to(device)
    index = grown.num_styles - 1
    grown.train_only_styles([index])
    loss = _loss(meta, options.vgg_weights, options.content_weight).to(device)
    loss.set_style(image.to(device))
    if options.start == "nearest":
        _start_near(grown, loss, image, base_path, meta, options.style_size)
    photos = training_photos(options.photos, options.image_size)
    trained = [p for p in grown.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trained, lr=options.lr)
    rate = SCHEDULES[options.schedule]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: rate(done, options.steps))
    one_hot = torch.nn.functional.one_hot(torch.tensor(index), grown.num_styles).float().to(device)
    generator = torch.Generator().manual_seed(options.seed)
    painter = Painter(grown, one_hot)
    start = time.perf_counter()
    for step in range(1, options.steps + 1):
        if cancel is not None and cancel():
            raise FitCancelled
        batch = random_crops(photos, options.image_size, options.batch_size, generator).to(device)
        with _autocast(device):
            out = grown(batch, one_hot.expand(len(batch), -1))
            total = loss(out, batch, sample=True)["total"]
        if not torch.isfinite(total):
            raise FastNSTError(f"the fit diverged at step {step} (loss {total.item()}); lower the learning rate",
                               param="lr")
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        scheduler.step()
        if on_progress is not None:
            progress = FitProgress(step, options.steps, float(total.detach()), time.perf_counter() - start)
            on_progress(progress, painter)
    grown.eval().requires_grad_(False).cpu()
    described = (f"{name} ({painting.name}) added to {base_path.name}: its (γ, β) fitted for {options.steps} "
                 f"steps of batch {options.batch_size} at {options.image_size} px, shared weights frozen")
    fitted = dataclasses.replace(
        meta, arch=grown.arch, network=grown.config, style_name=f"{meta.style_name}+{name}"[:64], styles=[*names, name],
        style_images=[*(meta.image_of(n) for n in names), painting.name],
        default_style=name,
        description=f"{described}; base: {meta.description}"[:4096],
        loss={**meta.loss, "vgg_weights": Path(options.vgg_weights).name,
              **({"content_weight": options.content_weight} if options.content_weight is not None else {})})
    return grown, fitted


def add_style(painting: Path, target: Path, base: str | Path = DEFAULT_BASE, options: FitOptions = FitOptions(),
              name: str | None = None, on_progress: Callable[[FitProgress, Painter], None] | None = None,
              cancel: Callable[[], bool] | None = None, image: torch.Tensor | None = None) -> Path:
    """Fit ``painting`` and write the grown model to ``target`` (atomically: an interrupted fit writes nothing)."""
    network, meta = fit_style(painting, base, options, name, on_progress, cancel, image)
    return save_stylizer(network, target, meta)


def cached_style(painting: Path, base: str | Path = DEFAULT_BASE, options: FitOptions = FitOptions(),
                 name: str | None = None, on_progress: Callable[[FitProgress, Painter], None] | None = None,
                 cancel: Callable[[], bool] | None = None, folder: Path | None = None,
                 image: torch.Tensor | None = None, on_wait: Callable[[], None] | None = None,
                 on_note: Callable[[str], None] = log.warning) -> tuple[Path, bool]:
    """The model of ``base`` + ``painting``, from the cache or fitted into it; returns (path, was cached).
    Two processes asking for one painting at once: the second waits for the first (``on_wait`` tells it so)
    and reuses its result. An entry that fails its checks (another file planted there, flipped bytes,
    truncation) is fitted again; a cache that cannot be used (a file, read-only, full) costs the reuse,
    never the fit: the model is then written to a temporary file. ``on_note`` hears what the user should know
    (an entry fitted again, a cache that could not be used)."""
    if not painting.is_file():
        raise FastNSTError(f"{painting}: no such painting file", param="style_image")
    base_path = resolve_model(base)
    read_metadata(base_path)  # a folder, a missing or a foreign file: one line now, not after hashing or fitting
    key = cache_key(painting, base_path, options, name)
    root = folder or cache_dir() / "fitted"
    target = root / f"{key}.safetensors"

    fitted: tuple[StyleNetwork, ModelMeta] | None = None
    try:
        if _valid_entry(target, base_path, on_note):
            return target, True
        root.mkdir(parents=True, exist_ok=True)
        with file_lock(root / "fits.lock", on_wait):  # one lock for the folder: no lock file left per key
            if _valid_entry(target, base_path, on_note):  # fitted by another process while this one waited
                return target, True
            fitted = fit_style(painting, base_path, options, name, on_progress, cancel, image)
            save_stylizer(fitted[0], target, fitted[1])
            target.with_suffix(".sha256").write_text(sha256_file(target))
            return target, False
    except OSError as err:
        where = Path(tempfile.gettempdir()) / f"fastnst-{key}.safetensors"
        on_note(f"the fitted-style cache {root} cannot be used ({err.strerror or err.__class__.__name__}); this "
                "fit is not kept for next time")
        if fitted is None:  # else the fit is done and only its entry could not be written: keep it
            fitted = fit_style(painting, base_path, options, name, on_progress, cancel, image)
        return save_stylizer(fitted[0], where, fitted[1]), False


def _valid_entry(target: Path, base: Path, on_note: Callable[[str], None]) -> bool:
    """Whether the entry at ``target`` is the one this cache wrote for ``base``: its content hash matches the
    one written beside it, and it loads as ``base`` grown by one style. A bad entry is removed (and fitted
    again by the caller), with a warning."""
    if not target.exists():
        return False
    try:
        digest = target.with_suffix(".sha256")
        if not target.is_file() or not digest.is_file() or digest.read_text().strip() != sha256_file(target):
            raise FastNSTError("its checksum does not match")
        network, meta = load_network(target)
        base_meta = read_metadata(base)
        if meta.arch != base_meta.arch or meta.style_names[:-1] != base_meta.style_names \
                or network.num_styles != len(base_meta.style_names) + 1:
            raise FastNSTError("it is not this base grown by one style")
    except (FastNSTError, OSError) as err:
        on_note(f"the cached fit {target.name} is damaged ({err}); fitting it again")
        for path in (target, target.with_suffix(".sha256")):
            with contextlib.suppress(OSError):
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        return False
    return True


def cache_key(painting: Path, base: Path, options: FitOptions, name: str | None = None) -> str:
    recipe = json.dumps({**options.recipe(), "vgg_weights": _weights_digest(options.vgg_weights), "name": name},
                        sort_keys=True)
    digest = hashlib.sha256(f"{sha256_file(painting)}|{sha256_file(base)}|{recipe}".encode()).hexdigest()
    return f"{style_name(painting)[:32]}-{digest[:16]}"


def _weights_digest(weights: str) -> str:
    """A local VGG file by its content (two different `vgg16.pth` must not share entries); a name as is."""
    path = Path(weights).expanduser()
    return sha256_file(path) if path.is_file() else weights


def training_photos(folder: Path | None, size: int) -> list[torch.Tensor]:
    """The photos crops are drawn from, each resized so its short side is 1.5x the crop (crops take 2/3 to all)."""
    if folder is not None and not folder.is_dir():
        raise FastNSTError(f"{folder}: no such folder of photos", param="photos")
    files = find_images(folder or PHOTO_DIR)
    photos = []
    for path in files[:2000]:  # a few hundred photos are plenty for 1,600 parameters; bound the memory
        try:
            x = to_tensor(open_image(path, long_side=4 * size))
        except FastNSTError as err:
            log.warning("skipped %s", err)
            continue
        short = min(x.shape[-2:])
        photos.append(fit_long_side(x, round(max(x.shape[-2:]) * 1.5 * size / short)))
    if not photos:
        raise FastNSTError(f"{folder or PHOTO_DIR}: no readable photos to fit on", param="photos")
    return photos


def random_crops(photos: list[torch.Tensor], size: int, batch: int, generator: torch.Generator) -> torch.Tensor:
    """``batch`` random crops of random photos, drawn as training draws them (``core/crops.py``)."""
    picks = torch.randint(len(photos), (batch,), generator=generator).tolist()
    return torch.stack([random_crop(photos[i][0], size, generator=generator) for i in picks])


@torch.no_grad()
def _start_near(network: StyleNetwork, loss: PerceptualLoss, image: torch.Tensor, base: Path, meta: ModelMeta,
                size: int) -> list[float]:
    """Start the new (last) style's (γ, β) at a mix of the known styles' rows, each weighted by how close its
    painting is to the new one by their signatures (``core/signatures.py``: softmax of minus the distance, at
    a temperature of a quarter of the median distance), so a painting like one the base knows starts near
    it. The signatures come from the base's file; a base without them has them made from its paintings
    where this machine has them (the others are left out; with none, the mean start stands)."""
    layers = loss.style_layers
    rows, known = list(range(len(meta.style_names))), read_signatures(base)
    if known is None or known.shape[1] != signatures.width(layers):  # none, or made for other layers
        rows, known = known_signatures(meta, loss, size)
    if not rows:
        return []
    new = signatures.signature(loss.vgg, image.to(next(loss.vgg.buffers()).device), layers).cpu()
    d = signatures.distances(known, new, layers)
    weights = torch.softmax(-d / (0.25 * d.median().clamp_min(1e-8)), dim=0)
    index = torch.tensor(rows)
    for norm in network.norm_layers():
        for p in (norm.weight, norm.bias):
            p[-1] = (weights.to(p)[:, None] * p[index]).sum(dim=0)
    pairs = zip(rows, weights.tolist(), strict=True)
    log.info("started near %s", ", ".join(f"{meta.style_names[i]} {w:.2f}" for i, w in pairs if w >= 0.05))
    return weights.tolist()


@torch.no_grad()
def known_signatures(meta: ModelMeta, loss: PerceptualLoss, size: int = FitOptions.style_size
                     ) -> tuple[list[int], torch.Tensor]:
    """The signatures of a model's styles whose paintings this machine has (as a base's file keeps them):
    (their row numbers, (K, D))."""
    rows, found = [], []
    device = next(loss.vgg.buffers()).device
    for i, name in enumerate(meta.style_names):
        path = _style_path(meta.image_of(name))
        if path is not None:
            painting = styles.read_painting(path, size)[0].to(device)
            rows.append(i)
            found.append(signatures.signature(loss.vgg, painting, loss.style_layers).cpu())
    return rows, torch.stack(found) if found else torch.zeros(0, 0)


def _style_path(location: str) -> Path | None:
    """A known style's painting on this machine, or None (a URL is not fetched for this)."""
    if not location or location.startswith(("http://", "https://")):
        return None
    try:
        path = styles.resolve(location)
    except FastNSTError:
        return None
    return path if path.is_file() else None


def fit_loss_keys() -> list[str]:
    """The base's loss settings a fit keeps: every term's but those that do not apply to a fit (temporal),
    and the VGG's but its weights (the machine's own file)."""
    return [k for k in VGG_KEYS if k != "vgg_weights"] + [k for t in all_terms() if t.in_fits for k in t.keys]


def _loss(meta: ModelMeta, vgg_weights: str, content_weight: float | None = None) -> PerceptualLoss:
    spec = {k: meta.loss[k] for k in fit_loss_keys() if k in meta.loss}
    if content_weight is not None:
        spec["content_weight"] = content_weight
    if not spec.get("style_layers"):
        raise FastNSTError("the base model's file does not say how it was trained (no loss in its metadata)",
                           param="model")
    return PerceptualLoss.from_spec(**spec, vgg_weights=vgg_weights)


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 where it is native (CUDA; CPUs with AMX or AVX512-BF16); fp32 elsewhere."""
    if bf16_preferred(device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _folder_digest(folder: Path) -> str:
    """The photos a fit used, by name and size (cheap; a changed folder gives another cache entry)."""
    if not folder.is_dir():
        return str(folder)
    listing = sorted(f"{p.relative_to(folder)}:{p.stat().st_size}" for p in find_images(folder))
    return hashlib.sha256("\n".join(listing).encode()).hexdigest()[:16]
