"""scripts/quality/heldout.py: held-out style and content losses, with checks that can fail."""

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from fastnst.core.modelfile import ModelMeta, save_stylizer
from fastnst.core.transformer import TransformerNet

from conftest import ROOT, SHARED, make_image

STANDIN = SHARED / "vgg" / "vgg16_standin.safetensors"


def quality(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.quality.heldout", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_it_reports_and_its_check_can_fail(tmp_path: Path, style_path: Path) -> None:
    photos = tmp_path / "photos"
    for i in range(2):
        make_image(photos / f"p{i}.png", (40, 32), seed=i)
    loss = {"vgg": "vgg16", "vgg_weights": "random", "content_layers": {"relu2_2": 1.0},
            "style_layers": {"relu1_2": 1.0, "relu2_2": 1.0}, "style_weight": 1.0, "style_norm": "target"}
    model = save_stylizer(TransformerNet(channels=8, num_residual=1), tmp_path / "m.safetensors",
                          ModelMeta(style_name="toy", style_image=str(style_path), style_size=32, loss=loss))
    ok = quality("--model", model, "--content-dir", photos, "--size", 32, "--gatys-steps", 2)
    assert ok.returncode == 0, ok.stderr
    rows = [line for line in ok.stdout.splitlines() if line.startswith(("| p0.png", "| p1.png"))]
    assert len(rows) == 2 and "style loss cut" in ok.stdout and "Gatys content" in ok.stdout
    strict = quality("--model", model, "--content-dir", photos, "--size", 32, "--min-style-cut", 1e9)
    assert strict.returncode == 1 and "FAIL: style loss cut" in strict.stderr


@pytest.mark.slow
@pytest.mark.skipif(not STANDIN.is_file(), reason="needs ../shared/assets (the stand-in VGG and photos)")
def test_a_short_real_training_run_puts_style_in_and_an_untrained_network_does_not(tmp_path: Path) -> None:
    cmd = [sys.executable, "train.py", "style=udnie", "model=johnson_small", f"data.root={SHARED / 'train'}",
           "data.image_size=64", "data.batch_size=4", "data.num_workers=0", f"loss.vgg_weights={STANDIN}",
           "trainer=cpu", "trainer.max_steps=60", "trainer.val_check_interval=60", "trainer.enable_progress_bar=false",
           f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    trained = Path(proc.stdout.strip().splitlines()[-1])
    args = ["--content-dir", SHARED / "content", "--images", 3, "--size", 128, "--min-style-cut", 2]
    assert quality("--model", trained, *args).returncode == 0
    untrained = tmp_path / "untrained.safetensors"
    from fastnst.core.modelfile import read_metadata

    save_stylizer(TransformerNet(channels=16), untrained, read_metadata(trained))
    assert quality("--model", untrained, *args).returncode == 1


def test_a_multi_style_model_is_judged_style_by_style_against_its_own_painting(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    make_image(photos / "p0.png", (40, 32), seed=0)
    styles = [make_image(tmp_path / f"s{i}.png", (32, 32), seed=10 + i) for i in range(2)]
    loss = {"vgg": "vgg16", "vgg_weights": "random", "content_layers": {"relu2_2": 1.0},
            "style_layers": {"relu1_2": 1.0}, "style_weight": 1.0, "style_norm": "target"}
    model = save_stylizer(TransformerNet(channels=8, num_residual=1, num_styles=2), tmp_path / "m.safetensors",
                          ModelMeta(style_name="pair", styles=["a", "b"], style_images=list(map(str, styles)),
                                    style_size=32, loss=loss))
    both = quality("--model", model, "--content-dir", photos, "--size", 32)
    assert both.returncode == 0, both.stderr
    assert "# pair / a:" in both.stdout and "# pair / b:" in both.stdout
    photo_style = [line.split("|")[2] for line in both.stdout.splitlines() if line.startswith("| p0.png")]
    assert len(photo_style) == 2 and photo_style[0] != photo_style[1]  # each judged against its own painting
    one = quality("--model", model, "--content-dir", photos, "--size", 32, "--style", "b")
    assert "# pair / b:" in one.stdout and "# pair / a:" not in one.stdout
    bad = quality("--model", model, "--content-dir", photos, "--style", "c")
    assert bad.returncode == 2 and "unknown style 'c'" in bad.stderr


def test_the_grid_index_finds_a_pattern_on_the_networks_4_pixel_grid() -> None:
    import torch

    from scripts.quality.study import grid_index

    torch.manual_seed(0)
    y, x = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 128), indexing="ij")
    photo = torch.stack([y, x, (x + y) / 2])[None] + 0.05 * torch.rand(1, 3, 96, 128)
    hatched = photo.clone()
    hatched[..., 0::4, 0::4] += 0.1  # a faint pattern locked to the grid, as the nearest-upsampling starters paint
    hatched[..., 1::4, 1::4] += 0.1
    assert grid_index(photo) < 3
    assert grid_index(hatched) > 10 * grid_index(photo)
    shifted = torch.roll(hatched, shifts=(2, 2), dims=(-2, -1))
    assert grid_index(shifted) > 10 * grid_index(photo)  # the phase does not matter, the period does


def test_the_study_judges_models_by_one_loss_and_a_multi_style_model_by_the_style_named(tmp_path: Path) -> None:
    import torch

    from scripts.quality import study

    torch.manual_seed(0)
    photos = tmp_path / "photos"
    for i in range(2):
        make_image(photos / f"p{i}.png", (48, 40), seed=i)
    style = make_image(tmp_path / "s.png", (32, 32), seed=10)
    loss = {"vgg": "vgg16", "vgg_weights": "random", "content_layers": {"relu2_2": 1.0},
            "style_layers": {"relu1_2": 1.0}, "style_weight": 1.0, "style_norm": "target"}
    (tmp_path / "one").mkdir()
    (tmp_path / "pair").mkdir()
    one = save_stylizer(TransformerNet(channels=8, num_residual=1), tmp_path / "one" / "m.safetensors",
                        ModelMeta(style_name="a", style_image=str(style), style_size=32, loss=loss))
    net = TransformerNet(channels=8, num_residual=1, num_styles=2)
    for norm in net.norm_layers():  # two styles that differ
        torch.nn.init.normal_(norm.weight, 1.0, 0.5)
    pair = save_stylizer(net, tmp_path / "pair" / "m.safetensors",
                         ModelMeta(style_name="pair", styles=["a", "b"], style_images=[str(style)] * 2,
                                   style_size=32, loss=loss))
    rows = {}
    for row in ("a", "b"):
        out = tmp_path / f"{row}.txt"
        with open(out, "w") as f, contextlib.redirect_stdout(f):
            assert study.main(["--models", f"{one},{pair}", "--reference", str(one), "--content-dir", str(photos),
                               "--vgg-weights", "random", "--size", "32", "--hatch-size", "48", "--style", row,
                               "--crops", str(tmp_path / "crops.jpg"), "--crop-photos", "p0,p1"]) == 0
        rows[row] = [line for line in out.read_text().splitlines() if line.startswith(("| one", "| pair"))]
    assert len(rows["a"]) == 2 and rows["a"][0] == rows["b"][0]  # a one-style model paints its one style
    assert rows["a"][1] != rows["b"][1]  # the pair's two rows differ
    assert Image.open(tmp_path / "crops.jpg").size == (2 * 256, 2 * 256)  # a column per model, a row per photo
