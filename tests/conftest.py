"""Shared fixtures. Every test runs on the CPU with small generated images and a randomly
initialised VGG (seeded): no downloads, no pretrained weights, so losses are not perceptual."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from samples import make_image  # noqa: F401  (re-exported: tests import it from here)

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
SHARED = ROOT.parent / "shared" / "assets"


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for i in range(8):
        make_image(root / ("sub" if i % 2 else "") / f"img{i}.{'png' if i % 3 else 'jpg'}", (56, 48), seed=i)
    return root


@pytest.fixture
def style_path(tmp_path: Path) -> Path:
    return make_image(tmp_path / "style.jpg", (64, 48), seed=99)


@pytest.fixture
def fit_cache(tmp_path: Path, monkeypatch) -> None:
    """For the painting-fitting commands: a cache of the test's own, and its folder as the working one."""
    monkeypatch.setenv("FASTNST_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A tiny two-style base model to fit paintings onto."""
    from samples import tiny_base

    return tiny_base(tmp_path / "base.safetensors")


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Two small photos to fit on."""
    for i in range(2):
        make_image(tmp_path / "photos" / f"p{i}.png", (64, 48), seed=i)
    return tmp_path / "photos"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _torch_engine(monkeypatch) -> None:
    """Most tests check what the Stylizer does, not the engine: PyTorch, so that no test pays a graph
    conversion (tests/inference/test_engines.py checks OpenVINO against it)."""
    monkeypatch.setenv("FASTNST_ENGINE", "torch")


def compose_train(overrides: list[str], run_dir: Path, config_name: str = "train") -> DictConfig:
    """Compose the real config with the overrides, as `python train.py` would, with the run
    directory given as plain config (the library never asks Hydra's runtime for it)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides)
    cfg.paths.output_dir = str(run_dir)
    return cfg


def tiny_train_overrides(style: Path, data: Path | None = None, steps: int = 4) -> list[str]:
    """A real training config shrunk to seconds: 32 px crops, the small network, random VGG."""
    if data:
        data_args = [f"data.root={data}", "data.synthetic=false", "data.num_workers=0"]
    else:
        data_args = ["data=synthetic", "data.synthetic_length=16"]
    return [
        "experiment=smoke", f"style.image={style}", "style.size=32", *data_args,
        "data.image_size=32", "data.batch_size=2", "data.num_val=2",
        f"trainer.max_steps={steps}", "trainer.val_check_interval=2", "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false",
        "checkpoint_every_n_steps=2",
    ]


@pytest.fixture
def small_calibration(monkeypatch) -> None:
    """INT8 tests calibrate on 8 crops of 64 px instead of 32 of 256 px: the same NNCF path, 4x sooner."""
    from fastnst.inference import quantize

    monkeypatch.setattr(quantize, "CALIBRATION_CROPS", 8)
    monkeypatch.setattr(quantize, "CROP", 64)
