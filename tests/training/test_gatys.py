"""The Gatys baseline: same loss object as training, on 32-48 px images with a random VGG."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastnst.core.errors import FastNSTError
from fastnst.core.losses import PerceptualLoss
from fastnst.core.modelfile import ModelMeta, save_stylizer
from fastnst.core.transformer import TransformerNet
from fastnst.core.vgg import VGGFeatures
from fastnst.training.gatys import GatysOptions, initial_image, optimize
from fastnst.training.gatys_run import run as optimize_run

from conftest import ROOT, compose_train, make_image


@pytest.fixture(scope="module")
def loss() -> PerceptualLoss:
    vgg = VGGFeatures("vgg16", ["relu2_2", "relu1_2", "relu3_3"], weights="random", seed=0)
    loss = PerceptualLoss(vgg, {"relu2_2": 1.0}, {"relu1_2": 1.0, "relu3_3": 1.0}, style_weight=1e3, tv_weight=1.0)
    loss.set_style(torch.rand(1, 3, 40, 40))
    return loss


def test_a_few_steps_lower_the_loss(loss: PerceptualLoss) -> None:
    content = torch.rand(1, 3, 32, 32)
    result = optimize(loss, content, GatysOptions(steps=8, init="noise"))
    assert len(result.losses) == 8 and result.losses[-1] < 0.5 * result.losses[0]
    assert result.image.min() >= 0 and result.image.max() <= 1


def test_adam_also_lowers_the_loss(loss: PerceptualLoss) -> None:
    result = optimize(loss, torch.rand(1, 3, 32, 32), GatysOptions(steps=10, optimizer="adam", lr=0.05, init="noise"))
    assert result.losses[-1] < result.losses[0]


@pytest.mark.parametrize("init", ["content", "noise", "style"])
def test_init_modes(init: str) -> None:
    content = torch.linspace(0, 1, 20 * 30).reshape(1, 1, 20, 30).expand(1, 3, 20, 30)
    style = torch.full((1, 3, 50, 40), 0.25)
    x = initial_image(init, content, style, seed=0)
    assert x.shape == content.shape
    assert torch.equal(x, content) == (init == "content")


def test_content_init_starts_at_zero_content_loss(loss: PerceptualLoss) -> None:
    content = torch.rand(1, 3, 32, 32)
    terms = []
    optimize(loss, content, GatysOptions(steps=2), callback=lambda s, t, i: terms.append(t))
    # The first step's loss is that of the image it starts from: the photo itself, so no content loss at all.
    assert float(terms[0]["content"]) == 0.0 and float(terms[1]["content"]) > 0


def test_coarse_to_fine_ends_at_the_last_scale(loss: PerceptualLoss) -> None:
    sizes = []
    result = optimize(loss, torch.rand(1, 3, 60, 40), GatysOptions(steps=2, scales=(24, 48)),
                      callback=lambda s, t, img: sizes.append(tuple(img.shape[-2:])))
    assert result.image.shape[-2:] == (48, 32)
    assert sizes == [(24, 16), (24, 16), (48, 32), (48, 32)]


def test_preserve_color_keeps_the_photos_chroma(loss: PerceptualLoss) -> None:
    from fastnst.core.color import rgb_to_ycbcr

    content = 0.3 + 0.4 * torch.rand(1, 3, 32, 32)
    result = optimize(loss, content, GatysOptions(steps=3, init="noise", preserve_color=True))
    chroma = lambda x: rgb_to_ycbcr(x)[:, 1:]  # noqa: E731
    assert (chroma(result.image) - chroma(content)).abs().mean() < 0.02


def test_a_diverging_run_keeps_the_last_good_image(loss: PerceptualLoss) -> None:
    content = torch.rand(1, 3, 32, 32)
    calls = {"n": 0}
    original = loss.forward

    def nan_after_three(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        terms = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] > 3:
            terms["total"] = terms["total"] * float("nan")
        return terms

    loss.forward = nan_after_three
    try:
        result = optimize(loss, content, GatysOptions(steps=10, optimizer="adam", lr=0.01))
    finally:
        del loss.forward
    assert result.diverged_at == 3 and torch.isfinite(result.image).all()


def test_optimize_uses_the_trainers_loss_code(style_path: Path, tmp_path: Path, monkeypatch) -> None:
    """One code path: optimize.py builds its loss with PerceptualLoss.from_spec from the same
    conf/loss group as train.py, and the optimisation calls PerceptualLoss.forward."""
    built = []
    from_spec = PerceptualLoss.from_spec.__func__
    monkeypatch.setattr(PerceptualLoss, "from_spec",
                        classmethod(lambda cls, **kw: built.append(kw) or from_spec(cls, **kw)))
    calls = []
    original = PerceptualLoss.forward
    monkeypatch.setattr(PerceptualLoss, "forward", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    photo = make_image(tmp_path / "photo.png", (40, 30))
    cfg = compose_train([f"style.image={style_path}", "style.size=32", f"content={photo}", "image_size=32",
                         "gatys.steps=3", "loss.vgg_weights=random", "progress_bar=false"],
                        tmp_path / "run", config_name="optimize")
    path = optimize_run(cfg)
    assert len(calls) >= 3 and path.is_file()
    train_loss = compose_train([f"style.image={style_path}", "loss.vgg_weights=random"], tmp_path / "t").loss
    assert len(built) == 1 and built[0]["style_layers"] == dict(train_loss.style_layers)
    assert list((tmp_path / "run" / "tensorboard").iterdir())


def test_optimize_without_content_is_a_clear_error(tmp_path: Path) -> None:
    cfg = compose_train(["loss.vgg_weights=random"], tmp_path, config_name="optimize")
    with pytest.raises(FastNSTError, match="no content photo") as err:
        optimize_run(cfg)
    assert err.value.param == "content"


def test_optimize_py_with_a_corrupt_content_image_is_one_line(style_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    proc = subprocess.run([sys.executable, "optimize.py", f"style.image={style_path}", f"content={bad}",
                           "loss.vgg_weights=random", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "bad.jpg" in proc.stderr.strip().splitlines()[-1]


def test_compare_runs_end_to_end(style_path: Path, tmp_path: Path, capsys) -> None:
    model = save_stylizer(TransformerNet(channels=8, num_residual=1), tmp_path / "m.safetensors", ModelMeta(
        style_name="toy", style_image=str(style_path), style_size=32,
        loss={"vgg": "vgg16", "vgg_weights": "random", "content_layers": {"relu2_2": 1.0},
              "style_layers": {"relu1_2": 1.0, "relu2_2": 1.0}, "content_weight": 1.0,
              "style_weight": 1e3, "tv_weight": 1.0}))
    photos = tmp_path / "photos"
    for i in range(2):
        make_image(photos / f"p{i}.png", (40, 36), seed=i)
    from scripts.quality import compare

    assert compare.main(["--model", str(model), "--content-dir", str(photos), "--sizes", "32,48", "--iterations",
                         "2,4", "--images", "2", "--plot", str(tmp_path / "plot.png"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| photo | fast network loss | Gatys @2 | Gatys @4 | Gatys iterations to match |" in out
    assert "| size | Gatys 2 | Gatys 4 | fast network | speed-up 2 | speed-up 4 |" in out
    assert "| 32x32 |" in out and "| 48x48 |" in out
    assert (tmp_path / "plot.png").stat().st_size > 0


def test_ctrl_c_saves_the_current_image(style_path: Path, tmp_path: Path) -> None:
    import signal
    import time

    photo = make_image(tmp_path / "photo.png", (40, 30))
    out = tmp_path / "result.png"
    args = [sys.executable, "optimize.py", f"style.image={style_path}", "style.size=32", f"content={photo}",
            "image_size=32", "gatys.steps=100000", "loss.vgg_weights=random", "progress_bar=false",
            f"output={out}", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list((tmp_path / "run").glob("tensorboard/events*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err
    assert f"saved the current image to {out}" in err and out.is_file()
