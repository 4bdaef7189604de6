import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate

from fastnst.core.styles import load_style

from conftest import CONF, ROOT, compose_train

STYLES = sorted(p.stem for p in (CONF / "style").glob("*.yaml"))


def test_all_promised_styles_exist() -> None:
    assert set(STYLES) >= {"starry_night", "the_scream", "great_wave", "composition_vii", "shipwreck",
                           "udnie", "la_grande_jatte", "woman_with_hat", "custom"}


@pytest.mark.parametrize("style", [s for s in STYLES if s != "custom"])
def test_every_style_composes_with_weights_and_a_source(style: str, tmp_path: Path) -> None:
    cfg = compose_train([f"style={style}"], tmp_path)
    assert cfg.style.name == style
    assert cfg.style.image == f"builtin:{style}" and str(cfg.style.source).startswith("https://")
    assert cfg.loss.style_weight > 0 and cfg.loss.content_weight > 0 and cfg.style.size >= 128
    image, sha = load_style(cfg.style.image, cfg.style.size)  # ships with the package: no download
    assert max(image.shape[-2:]) == cfg.style.size and len(sha) == 64


def test_custom_style_takes_any_image(tmp_path: Path) -> None:
    cfg = compose_train(["style=custom", "style.image=my.jpg"], tmp_path)
    assert cfg.style.image == "my.jpg"


GROUP_EFFECTS = {
    "model=johnson": lambda c: instantiate(c.model).channels == 32,
    "model=johnson_small": lambda c: instantiate(c.model).channels == 16,
    "loss=gatys": lambda c: c.loss.vgg == "vgg19" and list(c.loss.style_layers)[-1] == "relu5_1",
    "trainer=ddp": lambda c: c.trainer.strategy == "ddp" and c.trainer.devices == 2,
    "trainer=cpu": lambda c: c.trainer.accelerator == "cpu" and c.trainer.max_steps == 40000,
    "data=synthetic": lambda c: c.data.synthetic and c.data.root is None,
    "experiment=smoke": lambda c: (c.trainer.max_steps == 30 and c.loss.vgg_weights == "random"
                                   and c.data.synthetic and c.model.channels == 16),
    "logger=csv": lambda c: type(instantiate(c.logger)).__name__ == "CSVLogger",
    "~callbacks.model_checkpoint": lambda c: "model_checkpoint" not in c.callbacks,
}


@pytest.mark.parametrize("override", sorted(GROUP_EFFECTS))
def test_each_group_choice_changes_what_it_says(override: str, tmp_path: Path) -> None:
    # model=johnson is the default: compare it with the other network.
    default = compose_train(["model=johnson_small"] if override == "model=johnson" else [], tmp_path)
    cfg = compose_train([override], tmp_path)
    assert GROUP_EFFECTS[override](cfg)
    assert not GROUP_EFFECTS[override](default)  # the check can fail: the default differs


def test_callbacks_and_logger_write_into_the_run_directory(tmp_path: Path) -> None:
    cfg = compose_train([], tmp_path / "run")
    checkpoint = instantiate(cfg.callbacks.model_checkpoint)
    logger = instantiate(cfg.logger)
    assert Path(checkpoint.dirpath) == tmp_path / "run" / "checkpoints" and checkpoint.save_last
    assert Path(logger.log_dir) == tmp_path / "run" / "tensorboard"


def test_model_group_builds_the_network(tmp_path: Path) -> None:
    cfg = compose_train(["model=johnson_small"], tmp_path)
    assert instantiate(cfg.model).channels == 16


def test_gatys_loss_uses_vgg19_layers(tmp_path: Path) -> None:
    cfg = compose_train(["loss=gatys"], tmp_path)
    assert cfg.loss.vgg == "vgg19" and list(cfg.loss.content_layers) == ["relu4_2"]


def test_unknown_style_is_a_one_line_error() -> None:
    proc = subprocess.run([sys.executable, "train.py", "style=nope"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown style 'nope'" in proc.stderr


def test_a_multirun_sweep_trains_each_setting(tmp_path: Path) -> None:
    from conftest import make_image

    style = make_image(tmp_path / "style.jpg", (40, 40))
    proc = subprocess.run([sys.executable, "train.py", "-m", "experiment=smoke", f"style.image={style}",
                           "loss.style_weight=1e3,1e4", "trainer.max_steps=2", "trainer.enable_progress_bar=false",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = sorted((tmp_path / "sweep").glob("*/starry_night.safetensors"))
    assert [r.parent.name for r in runs] == ["0", "1"]
    from fastnst.core.modelfile import read_metadata

    assert [read_metadata(r).loss["style_weight"] for r in runs] == [1e3, 1e4]
