"""What a user runs, with the engine a user gets: the rest of the suite pins FASTNST_ENGINE=torch for speed
(tests/conftest.py), so these run `fastnst stylize` on a photo and a clip, and `fastnst app`'s photo route, in
processes of their own as a user would, on the default engine (OpenVINO on a CPU where it is installed), and
check the pictures against PyTorch's."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from fastnst.inference.stylizer import Stylizer

from samples import make_clip, make_image, spread_network

pytest.importorskip("openvino", reason="the default CPU engine is OpenVINO where it is installed")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The user's environment: no engine pinned; a cache of the test's own, where OpenVINO keeps its graphs."""
    env = {k: v for k, v in os.environ.items() if k != "FASTNST_ENGINE"}
    env["FASTNST_CACHE"] = str(tmp_path / "cache")
    return env


def fastnst(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastnst.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def converted(env: dict[str, str]) -> list[Path]:
    """The OpenVINO graphs the runs converted: the proof that the default path went through OpenVINO."""
    return list((Path(env["FASTNST_CACHE"]) / "openvino").rglob("*.xml"))


@pytest.fixture
def model(tmp_path: Path) -> Path:
    from fastnst.core.modelfile import ModelMeta, save_stylizer

    return save_stylizer(spread_network(residual=2), tmp_path / "toy.safetensors", ModelMeta(style_name="toy"))


def reference(model: Path, x: torch.Tensor) -> np.ndarray:
    out = Stylizer.from_file(model, device="cpu", precision="fp32", engine="torch").stylize_tensor(x)
    return out[0].permute(1, 2, 0).numpy() * 255


def test_stylize_a_photo_on_the_default_engine(model: Path, tmp_path: Path, env: dict[str, str]) -> None:
    photo = make_image(tmp_path / "photo.png", (64, 48), seed=3)
    done = fastnst(env, "stylize", str(photo), "--model", str(model))
    assert done.returncode == 0, done.stderr[-2000:]
    assert converted(env), "the default path did not go through OpenVINO"
    out = np.asarray(Image.open(tmp_path / "photo_toy.png").convert("RGB"), dtype=np.float32)
    x = torch.from_numpy(np.asarray(Image.open(photo).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    assert np.abs(out - reference(model, x)).mean() < 4  # bf16 or fp32, whichever this CPU gets: close to PyTorch


def test_stylize_a_clip_on_the_default_engine(model: Path, tmp_path: Path, env: dict[str, str]) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frames=8)
    done = fastnst(env, "stylize", str(clip), "--model", str(model))
    assert done.returncode == 0, done.stderr[-2000:]
    assert converted(env)
    with av.open(str(tmp_path / "clip_toy.mp4")) as result, av.open(str(clip)) as source:
        frames = [f.to_ndarray(format="rgb24") for f in result.decode(video=0)]
        first = next(source.decode(video=0)).to_ndarray(format="rgb24")
    assert len(frames) == 8 and frames[0].shape == first.shape
    x = torch.from_numpy(first.astype(np.float32) / 255).permute(2, 0, 1)[None]
    assert np.abs(frames[0].astype(np.float32) - reference(model, x)).mean() < 8  # x264 adds its own error


def test_the_apps_photo_route_on_the_default_engine(model: Path, tmp_path: Path, env: dict[str, str]) -> None:
    pytest.importorskip("starlette")
    from live_app import request

    photo = make_image(tmp_path / "photo.png", (64, 48), seed=3)
    app = subprocess.Popen([sys.executable, "-m", "fastnst.cli", "app", "--port", "0", "--models", str(model)],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = app.stdout.readline()
        assert line.startswith("fastnst app: http://"), line + app.stderr.read()[-2000:]
        url = line.split()[2].rstrip("/")
        status, body, headers = request(url + "/api/stylize", {"model": "toy", "size": "1024"},
                                        {"image": ("photo.png", photo.read_bytes())})
    finally:
        app.send_signal(signal.SIGINT)
        app.wait(timeout=60)
    assert status == 200 and headers["x-fastnst-engine"].startswith("openvino")
    out = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"), dtype=np.float32)
    x = torch.from_numpy(np.asarray(Image.open(photo).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    buffer = io.BytesIO()  # the app answers in JPEG: judge against PyTorch's picture through the same JPEG
    Image.fromarray(reference(model, x).round().astype(np.uint8)).save(buffer, format="JPEG", quality=85)
    expected = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32)
    error = np.abs(out - expected).mean()
    assert error < 6 and error < 0.3 * np.abs(out - x[0].permute(1, 2, 0).numpy() * 255).mean()
