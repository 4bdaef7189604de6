"""Training entry: builds everything from the Hydra config and runs Lightning. Hydra stops here;
everything below takes plain arguments."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fastnst.core.device import bf16_preferred, keep_freed_memory
from fastnst.core.errors import FastNSTError
from fastnst.core.locks import try_lock
from fastnst.core.losses import PerceptualLoss
from fastnst.core.modelfile import ModelMeta, load_network, read_metadata, resolve_model, save_stylizer
from fastnst.core.networks import StyleNetwork
from fastnst.core.networks.base import weight_config
from fastnst.core.styles import load_style
from fastnst.training.config import run_name, style_configs
from fastnst.training.data import StyleDataModule
from fastnst.training.module import StyleTransferModule

log = logging.getLogger(__name__)


def find_checkpoint(ckpt_path: str | None, run_dir: Path) -> Path | None:
    """``last``: this run directory's ``last.ckpt``, else the newest one among its sibling runs
    (the same style's earlier runs); a path: that file."""
    if ckpt_path is None:
        return None
    if ckpt_path != "last":
        path = Path(ckpt_path).expanduser()
        if not path.is_file():
            raise FastNSTError(f"checkpoint {path} does not exist", param="ckpt_path")
        return path
    candidates = list(run_dir.glob("checkpoints/last.ckpt")) or list(run_dir.parent.glob("*/checkpoints/last.ckpt"))
    if not candidates:
        raise FastNSTError(f"no checkpoints/last.ckpt to resume under {run_dir.parent}; start a fresh run",
                           param="ckpt_path")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def _precision(cfg: DictConfig) -> str:
    """``trainer.precision`` if set; else bf16-mixed on CUDA and on CPUs that run bf16 natively (AMX,
    AVX512-BF16: docs/speed.md has the training speed-up and the held-out losses against fp32), 32-true on
    other CPUs, where bf16 is emulated and slower than fp32. Logged, so the run says which it chose."""
    if cfg.trainer.get("precision") is not None:
        return str(cfg.trainer.precision)
    device = torch.device("cuda" if _on_gpu(cfg) else "cpu")
    if bf16_preferred(device):
        chosen, why = "bf16-mixed", "on CUDA" if device.type == "cuda" else "this CPU runs bf16 natively (AMX or " \
            "AVX512-BF16)"
    else:
        chosen, why = "32-true", "this CPU has no native bf16"
    log.info("precision %s: %s (set trainer.precision to choose)", chosen, why)
    return chosen


def _on_gpu(cfg: DictConfig) -> bool:
    return torch.cuda.is_available() and cfg.trainer.get("accelerator", "auto") in ("auto", "gpu", "cuda")


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Own ``run_dir`` for the length of a run: a second run pointed at the same folder (two started
    in the same second, or one explicit ``hydra.run.dir``) is refused instead of mixing checkpoints.
    The lock dies with its process (fastnst.core.locks); DDP workers share their launcher's."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if any(int(os.environ.get(v, "0") or 0) > 0 for v in ("LOCAL_RANK", "RANK", "SLURM_PROCID")):
        yield  # a worker of the run that holds the lock (Lightning and torchrun set these, srun the last)
        return
    lock = try_lock(run_dir / ".fastnst.lock")
    if lock is None:
        raise FastNSTError(f"another training run is writing to {run_dir}; give this one its own folder",
                           param="output_dir")
    try:
        yield
    finally:
        lock.release()


def check_resumable(ckpt: Path, meta: ModelMeta) -> None:
    """Refuse to resume a checkpoint of another network or style: it would train the wrong model. A setting
    that holds no weight (the upsampling) may change: the run goes on with the new one."""
    saved = read_metadata(ckpt)
    for field in ("arch", "network", "style_name", "style_sha256", "styles"):
        before, now = getattr(saved, field), getattr(meta, field)
        if field == "network":
            before, now = weight_config(before), weight_config(now)
        if before != now:
            raise FastNSTError(f"{ckpt} was trained with {field} {getattr(saved, field)!r}, this run has "
                               f"{getattr(meta, field)!r}; start a fresh run or resume the matching one",
                               param="ckpt_path")


def run(cfg: DictConfig) -> Path | None:
    """Train one style as the config says; returns the path of the exported ``.safetensors``."""
    run_dir = Path(cfg.paths.output_dir)
    resume = find_checkpoint(cfg.get("ckpt_path"), run_dir)
    if resume is not None:
        run_dir = resume.parent.parent  # keep writing the interrupted run's logs and checkpoints
        cfg.paths.output_dir = str(run_dir)  # the callbacks and the logger follow it
        log.info("resuming from %s", resume)
    with run_lock(run_dir):
        return _train(cfg, run_dir, resume)


def _train(cfg: DictConfig, run_dir: Path, resume: Path | None) -> Path | None:
    L.seed_everything(cfg.seed, workers=True)

    style_cfgs = style_configs(cfg)
    loaded = [load_style(str(s.image), int(s.size)) for s in style_cfgs]
    names = [str(s.name) for s in style_cfgs]
    _warn_on_style_weights(cfg, style_cfgs)
    datamodule: StyleDataModule = instantiate(cfg.data)
    datamodule.setup("fit")  # fails here, before training, on a missing, empty or unreadable root
    loss: PerceptualLoss = instantiate(cfg.loss)
    plan = _network(cfg, names)
    network = plan.network
    style_images = [*plan.base_images, *(str(s.image) for s in style_cfgs)]
    shas = [sha for _, sha in loaded]
    multi = network.num_styles > 1
    meta = ModelMeta(style_name=cfg.get("name") or plan.name,
                     style_image="; ".join(str(s.image) for s in style_cfgs),
                     style_sha256=shas[0] if len(shas) == 1 else hashlib.sha256("".join(shas).encode()).hexdigest(),
                     style_size=int(style_cfgs[0].size), arch=network.arch, network=network.config, loss=loss.spec,
                     image_size=int(cfg.data.image_size), description=plan.description,
                     styles=plan.names if multi else [], style_images=style_images if multi else [])
    if resume is not None:
        check_resumable(resume, meta)
        _check_steps_ahead(resume, int(cfg.trainer.max_steps))
    hparams = {**meta.to_dict(), "config": OmegaConf.to_container(cfg, resolve=True)}
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    module = StyleTransferModule(network, loss, instantiate(cfg.optimizer), [image for image, _ in loaded], hparams,
                                 channels_last=cfg.channels_last, nan_check_every_n_steps=cfg.nan_check_every_n_steps,
                                 style_ids=plan.train_ids, style_names=names, scheduler=scheduler)
    if cfg.compile:
        module.network.compile(mode=cfg.compile_mode)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg["precision"] = _precision(cfg)
    if cfg.get("keep_freed_memory", False) and not _on_gpu(cfg):
        log.info("malloc keeps freed memory for reuse: %s (keep_freed_memory=false to turn off)", keep_freed_memory())
    trainer: L.Trainer = instantiate(trainer_cfg, default_root_dir=str(run_dir), callbacks=callbacks, logger=logger)
    target = run_dir / f"{meta.style_name}.safetensors"
    try:
        with warnings.catch_warnings():
            # The loss network is frozen in eval mode on purpose; Lightning warns about it at every fit.
            warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume else None)
    except KeyboardInterrupt:
        _save_stylizer(module, trainer, datamodule, target, meta, interrupted=True)
        raise
    except SystemExit as err:
        _save_stylizer(module, trainer, datamodule, target, meta, interrupted=True)
        if isinstance(err.__context__, KeyboardInterrupt):  # Ctrl-C, which Lightning turns into SystemExit(1)
            raise KeyboardInterrupt from None
        raise
    except Exception:
        _save_stylizer(module, trainer, datamodule, target, meta, interrupted=True)  # never lose the steps trained
        raise
    return _save_stylizer(module, trainer, datamodule, target, meta)


def _check_steps_ahead(ckpt: Path, max_steps: int) -> None:
    """Refuse to resume a checkpoint already at or past ``max_steps``: Lightning would train nothing and the
    export would replace the newer model saved beside it (at Ctrl-C, or at the checkpoint's own end)."""
    steps = read_metadata(ckpt).steps or 0
    if steps >= max_steps:
        raise FastNSTError(f"{ckpt} is at step {steps}, not before trainer.max_steps={max_steps}; raise "
                           "trainer.max_steps to train on", param="max_steps")


class NetworkPlan(NamedTuple):
    network: StyleNetwork
    names: list[str]  # every style the network will hold, in row order
    train_ids: list[int]  # the rows this run trains
    description: str
    name: str  # the model's default name
    base_images: list[str]  # style images of the rows it starts with


def _network(cfg: DictConfig, names: list[str]) -> NetworkPlan:
    """The network to train for styles ``names``. With ``init_from``: the trained network grown by
    the new styles, with everything but their (γ, β) frozen; named ``<base>+<new>``."""
    description = str(cfg.get("description") or "")
    if cfg.get("init_from") and cfg.get("init_weights"):
        raise FastNSTError("init_from (add styles to a model) and init_weights (start from a model's weights) "
                           "do not go together; choose one", param="init_weights")
    if not cfg.get("init_from"):
        network = instantiate(cfg.model, num_styles=len(names))
        name = run_name(None, cfg.get("styles"), names[0])
        if cfg.get("init_weights"):
            network = _warm_start(network, str(cfg.init_weights), names)
            description = "; ".join(filter(None, [f"started from {Path(str(cfg.init_weights)).name}", description]))
        return NetworkPlan(network, names, list(range(len(names))), description, name, [])
    base_path = resolve_model(str(cfg.init_from))
    network, base = load_network(base_path)
    clash = sorted(set(names) & set(base.style_names))
    if clash:
        raise FastNSTError(f"{base_path.name} already has style(s) {', '.join(clash)}; give the new one another "
                           "name (style.name=...)", param="style_name")
    for _ in names:
        network = network.with_new_style()
    first = len(base.style_names)
    ids = list(range(first, first + len(names)))
    network.train_only_styles(ids)
    note = f"{', '.join(names)} added to {base_path.name} ({base.steps} steps), shared weights frozen"
    return NetworkPlan(network.train(), [*base.style_names, *names], ids, "; ".join(filter(None, [note, description])),
                       "+".join([base.style_name, *names])[:64], [base.image_of(n) for n in base.style_names])


def _warm_start(network: StyleNetwork, model: str, names: list[str]) -> StyleNetwork:
    """``network`` with every weight of a trained model of the same network and number of styles: a long run
    whose checkpoint is lost goes on from the last model it exported (scripts/data/campaign.py), and a new
    style can start from another's trained network, which already keeps the photo and paints without a grid
    (only the painting is new to it). The upsampling mode holds no weight, so a ``nearest`` model can go on as
    a ``bilinear`` one (the hatching's cure)."""
    path = resolve_model(model)
    trained, meta = load_network(path)
    if weight_config(trained.config) != weight_config(network.config) or len(meta.style_names) != len(names):
        raise FastNSTError(f"{path.name} is a {meta.network} network for {meta.style_names}; this run trains a "
                           f"{network.config} network for {names}", param="init_weights")
    if meta.style_names != names:
        log.info("starting %s from the weights of %s (trained for %s)", names, path.name, meta.style_names)
    network.load_state_dict(trained.state_dict())
    return network.train()


def _warn_on_style_weights(cfg: DictConfig, styles: list[DictConfig]) -> None:
    """A multi-style run has one set of loss weights (``loss.*``); say so when the styles' own differ."""
    for key in ("content_weight", "style_weight", "tv_weight", "palette_weight"):
        values = {float(s[key]) for s in styles if key in s}
        if len(values) > 1:
            log.warning("styles differ in %s (%s); this run uses loss.%s=%s for all of them", key,
                        sorted(values), key, cfg.loss[key])


def _save_stylizer(module: StyleTransferModule, trainer: L.Trainer, datamodule: StyleDataModule, path: Path,
            meta: ModelMeta, interrupted: bool = False) -> Path | None:
    """Export the stylizer (rank zero only) and print its path as the run's last line."""
    if datamodule.skipped:
        log.warning("%d unreadable training image(s) were skipped", datamodule.skipped)
    if not trainer.is_global_zero:
        return None
    if trainer.global_step == 0:
        if interrupted:
            print("stopped before the first training step: nothing to export", file=sys.stderr, flush=True)
        return None
    if not _finite(module):
        log.error("the network's weights or outputs are not finite; nothing exported (use the last checkpoint)")
        return None
    save_stylizer(module.network, path, dataclasses.replace(meta, steps=trainer.global_step))
    print(path.resolve(), flush=True)
    return path


@torch.no_grad()
def _finite(module: StyleTransferModule) -> bool:
    """Finite weights that also give a finite image: huge-but-finite weights after a diverging step
    would export a model that paints every photo black."""
    network = module.network
    if not all(torch.isfinite(p).all() for p in network.parameters()):
        return False
    device = next(network.parameters()).device
    return bool(torch.isfinite(network(torch.rand(1, 3, 32, 32, device=device))).all())
