"""What a user runs, with the engine a user gets: the rest of the suite pins FASTNST_ENGINE=torch for speed
(tests/conftest.py), so these run `fastnst stylize` on a photo and a clip, and the app's photo route, on the
default engine (OpenVINO on a CPU where it is installed), and check the result against PyTorch's."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from fastnst.cli.main import main
from fastnst.inference import engines
from fastnst.inference.stylizer import Stylizer

from samples import make_clip, make_image, spread_network, tiny_model

pytest.importorskip("openvino", reason="the default CPU engine is OpenVINO where it is installed")


@pytest.fixture(autouse=True)
def _default_engine(monkeypatch, tmp_path: Path) -> list:
    monkeypatch.delenv("FASTNST_ENGINE", raising=False)
    monkeypatch.setenv("FASTNST_CACHE", str(tmp_path / "cache"))  # converted graphs land here
    built = []
    original = engines.OpenVINOEngine.__init__

    def spy(self, *args, **kwargs) -> None:
        built.append(kwargs.get("precision", args[1] if len(args) > 1 else "fp32"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(engines.OpenVINOEngine, "__init__", spy)
    return built


@pytest.fixture
def model(tmp_path: Path) -> Path:
    from fastnst.core.modelfile import ModelMeta, save_stylizer

    tiny_model(tmp_path / "unused.safetensors")
    return save_stylizer(spread_network(residual=2), tmp_path / "toy.safetensors", ModelMeta(style_name="toy"))


def reference(model: Path, x: torch.Tensor) -> np.ndarray:
    out = Stylizer.from_file(model, device="cpu", precision="fp32", engine="torch").stylize_tensor(x)
    return out[0].permute(1, 2, 0).numpy() * 255


def test_stylize_a_photo_on_the_default_engine(model: Path, tmp_path: Path, _default_engine: list) -> None:
    photo = make_image(tmp_path / "photo.png", (64, 48), seed=3)
    assert main(["stylize", str(photo), "--model", str(model)]) == 0
    assert _default_engine, "the default path did not go through OpenVINO"
    out = np.asarray(Image.open(tmp_path / "photo_toy.png").convert("RGB"), dtype=np.float32)
    x = torch.from_numpy(np.asarray(Image.open(photo).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    assert np.abs(out - reference(model, x)).mean() < 4  # bf16 or fp32, whichever this CPU gets: close to PyTorch


def test_stylize_a_clip_on_the_default_engine(model: Path, tmp_path: Path, _default_engine: list) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frames=8)
    assert main(["stylize", str(clip), "--model", str(model)]) == 0
    assert _default_engine
    with av.open(str(tmp_path / "clip_toy.mp4")) as done, av.open(str(clip)) as source:
        frames = [f.to_ndarray(format="rgb24") for f in done.decode(video=0)]
        first = next(source.decode(video=0)).to_ndarray(format="rgb24")
    assert len(frames) == 8 and frames[0].shape == first.shape
    x = torch.from_numpy(first.astype(np.float32) / 255).permute(2, 0, 1)[None]
    assert np.abs(frames[0].astype(np.float32) - reference(model, x)).mean() < 8  # x264 adds its own error


def test_the_apps_photo_route_on_the_default_engine(model: Path, tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    from live_app import LiveApp

    photo = make_image(tmp_path / "photo.png", (64, 48), seed=3)
    with LiveApp([model], tmp_path / "work", engine=None) as app:
        status, body, headers = app.post("/api/stylize", {"model": "toy", "size": "1024"},
                                         {"image": ("photo.png", photo.read_bytes())})
    assert status == 200 and headers["x-fastnst-engine"].startswith("openvino")
    out = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"), dtype=np.float32)
    x = torch.from_numpy(np.asarray(Image.open(photo).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    buffer = io.BytesIO()  # the app answers in JPEG: judge against PyTorch's picture through the same JPEG
    Image.fromarray(reference(model, x).round().astype(np.uint8)).save(buffer, format="JPEG", quality=85)
    expected = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32)
    error = np.abs(out - expected).mean()
    assert error < 6 and error < 0.3 * np.abs(out - x[0].permute(1, 2, 0).numpy() * 255).mean()
