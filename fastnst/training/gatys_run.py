"""The Gatys entry (optimize.py): composes the same ``style`` and ``loss`` groups as training."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from fastnst.core.device import resolve_device
from fastnst.core.errors import FastNSTError
from fastnst.core.images import fit_long_side, load_rgb, save_image, to_pil
from fastnst.core.losses import PerceptualLoss
from fastnst.core.styles import load_style
from fastnst.training.gatys import GatysOptions, optimize

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> Path:
    """Optimise one image; returns the path of the saved result (also printed as the last line)."""
    torch.manual_seed(cfg.seed)
    run_dir = Path(cfg.paths.output_dir)
    device = resolve_device(cfg.device)
    if cfg.content is None:
        raise FastNSTError("no content photo given: name the photo to stylize", param="content")
    options: GatysOptions = instantiate(cfg.gatys)
    content = load_rgb(cfg.content)
    scales = options.scales
    content = fit_long_side(content, scales[-1] if scales else cfg.image_size).to(device)
    style, _ = load_style(cfg.style.image, cfg.style.size)
    loss: PerceptualLoss = instantiate(cfg.loss, temporal_weight=0.0).to(device)  # no video here
    loss.set_style(style.to(device))
    name = f"{Path(cfg.content).stem}_{cfg.style.name}.png"
    writer = SummaryWriter(str(run_dir / "tensorboard"))
    writer.add_text("config", f"<pre>{OmegaConf.to_yaml(cfg)}</pre>")
    total = options.steps * (len(scales) if scales else 1)
    bar = tqdm(total=total, unit="step", disable=not cfg.progress_bar)
    latest = {"image": content}

    def callback(step: int, terms: dict[str, torch.Tensor], image: torch.Tensor) -> None:
        latest["image"] = image
        bar.update(1)
        if step % cfg.log_every_n_steps == 0 or step == total:
            bar.set_postfix(loss=f"{float(terms['total']):.4g}")
            for key, value in terms.items():
                writer.add_scalar(f"loss/{key}", float(value), step)
        if step % cfg.image_every_n_steps == 0:
            writer.add_image("image", image[0].clamp(0, 1).cpu(), step)

    try:
        result = optimize(loss, content, options, style=style.to(device), callback=callback)
    except KeyboardInterrupt:
        bar.close()
        path = _save(latest["image"], run_dir / name, cfg.output)
        print(f"interrupted: saved the current image to {path}", file=sys.stderr)
        raise
    finally:
        bar.close()
        writer.close()
    path = _save(result.image, run_dir / name, cfg.output)
    if result.diverged_at is not None:
        raise FastNSTError(f"the loss became non-finite at step {result.diverged_at}; the last good image "
                           f"is saved at {path}; lower the learning rate or the loss weights", param="lr")
    print(path.resolve(), flush=True)
    return path


def _save(image: torch.Tensor, path: Path, output: str | None) -> Path:
    picture = to_pil(image.cpu())
    save_image(picture, path)
    if output:
        out = Path(output).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        save_image(picture, out)
        return out
    return path
