"""The web app's HTTP and WebSocket API against a real server (no browser: tests/app/browser drives the page).
Small seeded models, tiny images and clips; PyTorch engine."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("starlette", reason="the web app needs the [app] extra: pip install -e '.[app]'")

from live_app import STYLES, LiveApp, make_clip, request, served, small_model  # noqa: E402
from samples import make_image  # noqa: E402


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> LiveApp:
    yield from served(tmp_path_factory)


def photo_bytes(tmp_path: Path, size: tuple[int, int] = (64, 48), ext: str = "png") -> bytes:
    return make_image(tmp_path / f"photo.{ext}", size).read_bytes()


def stylize(app: LiveApp, data: bytes, name: str = "photo.png", **fields: str) -> tuple[int, bytes, dict]:
    return app.post("/api/stylize", {"model": "tiny", "size": "1024", **fields}, {"image": (name, data)})


def pixels(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"), dtype=np.float32)


def test_models_lists_the_given_files_with_their_styles(app: LiveApp) -> None:
    status, data = app.json("/api/models")
    assert status == 200
    by_id = {m["id"]: m for m in data["models"]}
    assert by_id["tiny"]["styles"] == [] and by_id["trio"]["styles"] == STYLES
    assert by_id["trio"]["default_style"] == STYLES[0]
    assert data["default"] in by_id


def test_a_photo_comes_back_stylized_at_its_size(app: LiveApp, tmp_path: Path) -> None:
    source = photo_bytes(tmp_path)
    start = time.perf_counter()
    status, body, headers = stylize(app, source)
    wall_ms = (time.perf_counter() - start) * 1000
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(body)).size == (64, 48)
    assert np.abs(pixels(body) - pixels(source)).mean() > 10
    # The server's own time is part of the request's, and the engine is the one this app was started with.
    assert 0 <= float(headers["x-fastnst-ms"]) <= wall_ms and headers["x-fastnst-engine"].startswith("torch")


def test_preview_size_and_full_resolution_download(app: LiveApp, tmp_path: Path) -> None:
    source = photo_bytes(tmp_path, (200, 100))
    _, preview, _ = stylize(app, source, size="64")
    assert Image.open(io.BytesIO(preview)).size == (64, 32)
    status, full, headers = stylize(app, source, name="holiday.png", size="full")
    assert status == 200 and headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(full)).size == (200, 100)
    assert "filename*=UTF-8''holiday_tiny.png" in headers["content-disposition"]


def test_strength_and_preserve_color_change_the_result(app: LiveApp, tmp_path: Path) -> None:
    source = photo_bytes(tmp_path)
    full = pixels(stylize(app, source, size="full")[1])
    none = pixels(stylize(app, source, size="full", strength="0")[1])
    kept = pixels(stylize(app, source, size="full", preserve_color="true")[1])
    assert np.abs(none - pixels(source)).max() <= 1  # strength 0: the photo itself
    assert np.abs(kept - full).mean() > 3


def test_styles_and_blends_of_a_multi_style_model(app: LiveApp, tmp_path: Path) -> None:
    source = photo_bytes(tmp_path)
    ink, fire = (pixels(stylize(app, source, model="trio", style=s, size="full")[1]) for s in ("ink", "fire"))
    half = pixels(stylize(app, source, model="trio", style="ink:0.5,fire:0.5", size="full")[1])
    assert np.abs(ink - fire).mean() > 5
    assert 0 < np.abs(half - ink).mean() < np.abs(fire - ink).mean()
    status, body, _ = stylize(app, source, model="trio", style="ink:0,fire:0")
    assert status == 400 and json.loads(body)["error"] == "style weights must not all be zero"


@pytest.mark.parametrize(("fields", "message"), [
    ({"model": "nope"}, "no model 'nope'"),
    ({"strength": "2"}, "strength must be between 0 and 1"),
    ({"strength": "lots"}, "strength must be a number"),
    ({"style": "ink"}, "choosing a style needs a multi-style model"),
    ({"model": "trio", "style": "ink..fire"}, "a morph (a..b) moves over a video's frames"),
])
def test_bad_options_get_a_message(app: LiveApp, tmp_path: Path, fields: dict, message: str) -> None:
    status, body, _ = stylize(app, photo_bytes(tmp_path), **fields)
    assert status == 400 and message in json.loads(body)["error"]


def test_bad_photos_get_a_message_and_the_server_keeps_serving(app: LiveApp, tmp_path: Path) -> None:
    status, body, _ = stylize(app, b"just some text\n", name="notes.txt")
    assert status == 400 and json.loads(body)["error"] == "notes.txt is not an image Pillow can read"
    Image.new("1", (12000, 11000)).save(tmp_path / "huge.png")  # 132 Mpx declared, 20 KB on disk
    status, body, _ = stylize(app, (tmp_path / "huge.png").read_bytes(), name="huge.png")
    assert status == 400 and "declares 12000x11000 = 132 Mpx" in json.loads(body)["error"]
    status, body, _ = app.post("/api/stylize", {"model": "tiny"}, {})
    assert status == 400 and json.loads(body)["error"] == "choose a photo to upload"
    assert stylize(app, photo_bytes(tmp_path))[0] == 200


def test_model_uploads_are_checked_and_then_offered(app: LiveApp, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    status, data = app.json("/api/models", {}, {"model": ("notes.txt", b"hello")})
    assert status == 400 and data["error"] == "notes.txt: a model file ends in .safetensors or .ckpt"
    status, data = app.json("/api/models", {}, {"model": ("fake.safetensors", b"hello")})
    assert status == 400 and data["error"].startswith("fake.safetensors is not a readable .safetensors model")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    status, data = app.json("/api/models", {}, {"model": ("other.safetensors", (tmp_path / "other.safetensors")
                                                          .read_bytes())})
    assert status == 400 and data["error"] == "other.safetensors is a .safetensors file but not a fastnst stylizer"
    mine = small_model(tmp_path / "mine.safetensors", seed=7).read_bytes()
    status, data = app.json("/api/models", {}, {"model": ("mine.safetensors", mine)})
    assert status == 200 and data["id"] == "mine" and data["uploaded"]
    assert stylize(app, photo_bytes(tmp_path), model="mine")[0] == 200
    assert list((app.workdir / "models").iterdir()) == [next((app.workdir / "models").glob("*.safetensors"))]


def wait_for(app: LiveApp, job: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, data = app.json(f"/api/videos/{job}")
        assert status == 200
        if data["state"] in ("done", "error"):
            return data
        time.sleep(0.1)
    raise AssertionError(f"video job {job} did not finish: {data}")


def test_a_clip_is_stylized_with_progress_and_its_audio(app: LiveApp, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "walk.mp4", frames=12).read_bytes()
    status, job = app.json("/api/videos", {"model": "trio", "style": "ink..fire"}, {"video": ("walk.mp4", clip)})
    assert status == 200 and job["state"] in ("queued", "running")
    done = wait_for(app, job["id"])
    assert done["state"] == "done" and done["frames"] == done["total"] == 12
    status, body, headers = app.get(job["result"])
    assert status == 200 and 'filename="walk_ink-to-fire.mp4"' in headers["content-disposition"]
    with av.open(io.BytesIO(body)) as clip_out:
        assert clip_out.streams.audio, "the audio was dropped"
        frames = [f.to_ndarray(format="rgb24") for f in clip_out.decode(video=0)]
    assert len(frames) == 12 and frames[0].shape == (48, 64, 3)
    assert not (app.workdir / "videos" / job["id"] / "input.mp4").exists()  # the upload is gone once done


def test_bad_clips_get_a_message(app: LiveApp, tmp_path: Path) -> None:
    with av.open(str(tmp_path / "sound.mp4"), "w") as out:  # an audio-only file: no video stream
        stream = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.int16), format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    for name, data, message in [("sound.mp4", (tmp_path / "sound.mp4").read_bytes(), "sound.mp4 has no video stream"),
                                ("notes.mp4", b"not a video at all" * 10, "notes.mp4 is not a video FFmpeg can read")]:
        status, job = app.json("/api/videos", {"model": "tiny"}, {"video": (name, data)})
        assert status == 200
        done = wait_for(app, job["id"])
        assert done["state"] == "error" and done["error"].startswith(message), done
        assert app.get(f"/api/videos/{job['id']}/result")[0] == 400
    assert app.get("/api/videos/0123/result")[0] == 400


def test_a_truncated_clip_is_done_with_a_warning(app: LiveApp, tmp_path: Path) -> None:
    full = make_clip(tmp_path / "full.mkv", frames=30, audio=False).read_bytes()
    status, job = app.json("/api/videos", {"model": "tiny"}, {"video": ("cut.mkv", full[: len(full) * 6 // 10])})
    assert status == 200
    done = wait_for(app, job["id"])
    assert done["state"] == "done" and "of 30 frames could not be decoded" in done["warning"], done
    status, job = app.json("/api/videos", {"model": "tiny"}, {"video": ("whole.mkv", full)})
    assert wait_for(app, job["id"])["warning"] == ""


def test_webcam_frames_come_back_stylized(app: LiveApp, tmp_path: Path) -> None:
    from websockets.sync.client import connect

    frame = io.BytesIO()
    Image.open(make_image(tmp_path / "frame.png", (80, 60))).save(frame, format="JPEG")
    with connect(app.url.replace("http", "ws") + "/ws/webcam") as ws:
        ws.send(frame.getvalue())
        assert json.loads(ws.recv(timeout=30))["error"] == "send the settings before the first frame"
        ws.send(json.dumps({"model": "trio", "style": "nope"}))
        assert "nope" in json.loads(ws.recv(timeout=30))["error"]
        outputs = {}
        for style in ("ink", "moss"):
            ws.send(json.dumps({"model": "trio", "style": style, "strength": 1}))
            assert json.loads(ws.recv(timeout=30))["ok"]
            ws.send(frame.getvalue())
            reply = ws.recv(timeout=30)
            assert isinstance(reply, bytes) and int.from_bytes(reply[:4], "little") > 0
            outputs[style] = pixels(reply[4:])
            assert outputs[style].shape == (60, 80, 3)
        assert np.abs(outputs["ink"] - outputs["moss"]).mean() > 5
        ws.send(json.dumps({"model": "trio", "style": "nope"}))  # refused: frames stay on moss
        reply = json.loads(ws.recv(timeout=30))
        assert "nope" in reply["error"] and not reply["frame"]
        ws.send(frame.getvalue())
        assert np.abs(pixels(ws.recv(timeout=30)[4:]) - outputs["moss"]).mean() < 1
        ws.send(b"garbage")
        reply = json.loads(ws.recv(timeout=30))
        assert "not an image" in reply["error"] and reply["frame"]


def test_webcam_frames_in_flight_come_back_in_order(app: LiveApp, tmp_path: Path) -> None:
    """The page keeps three frames in flight and the server stylizes two at once: replies must still
    come back in the order the frames were sent, or the video would jitter."""
    from websockets.sync.client import connect

    frames = []
    for seed in range(5):
        buffer = io.BytesIO()
        Image.open(make_image(tmp_path / f"f{seed}.png", (96, 72), seed=seed)).save(buffer, format="JPEG")
        frames.append(buffer.getvalue())
    with connect(app.url.replace("http", "ws") + "/ws/webcam") as ws:
        ws.send(json.dumps({"model": "tiny"}))
        assert json.loads(ws.recv(timeout=30))["ok"]
        alone = []
        for frame in frames:
            ws.send(frame)
            alone.append(pixels(ws.recv(timeout=30)[4:]))
        for frame in frames:
            ws.send(frame)
        together = [pixels(ws.recv(timeout=30)[4:]) for _ in frames]
    for i, (a, b) in enumerate(zip(alone, together, strict=True)):
        assert np.abs(a - b).mean() < 1, f"reply {i} is not frame {i}'s"


def start_app(args: list[str], env: dict, cwd: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "fastnst.cli", "app", "--port", "0", *args],
                               cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line.startswith("fastnst app: http://127.0.0.1:"), (line, process.stderr.read())
    return process, line.split()[2].rstrip("/")


def test_the_command_serves_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """`fastnst app` prints its address, serves, and on Ctrl+C removes everything it wrote."""
    temp, cwd, cache = tmp_path / "tmp", tmp_path / "cwd", tmp_path / "cache"
    for folder in (temp, cwd, cache):
        folder.mkdir()
    model = small_model(tmp_path / "models" / "tiny.safetensors")
    env = {**os.environ, "TMPDIR": str(temp), "FASTNST_CACHE": str(cache), "FASTNST_ENGINE": "torch"}
    process, url = start_app(["--models", str(model.parent)], env, cwd)
    try:
        status, body, _ = request(url + "/api/stylize", {"model": "tiny", "size": "full"},
                                  {"image": ("p.png", make_image(tmp_path / "p.png").read_bytes())})
        assert status == 200 and Image.open(io.BytesIO(body)).size == (48, 40)
        status, body, _ = request(url + "/api/models", {}, {"model": ("m.safetensors", model.read_bytes())})
        assert status == 200
        assert request(url + "/")[1].startswith(b"<!doctype html>")
        assert list(temp.iterdir()), "the app's work folder should be in TMPDIR while it runs"
        # Ctrl+C while a clip is being stylized: the clip is abandoned, its partial output removed.
        clip = make_clip(tmp_path / "long.mp4", frames=400, size=(160, 120), audio=False).read_bytes()
        status, body, _ = request(url + "/api/videos", {"model": "tiny"}, {"video": ("long.mp4", clip)})
        job = json.loads(body)["id"]
        deadline = time.monotonic() + 60
        while (progress := json.loads(request(f"{url}/api/videos/{job}")[1]))["frames"] == 0:
            assert time.monotonic() < deadline, progress
            time.sleep(0.05)
        assert progress["state"] == "running" and progress["frames"] < 400
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    assert list(temp.iterdir()) == [] and list(cwd.iterdir()) == []
    assert process.stdout.read().strip() == "fastnst app: stopped"


@pytest.mark.parametrize(("args", "message"), [
    (["--models", "missing.safetensors"], "error: missing.safetensors: no such model file or folder (--models)"),
    (["--port", "70000"], "error: port must be from 0 to 65535, got 70000 (--port)"),
    *([(["--device", "cuda"], "error: device cuda: no CUDA GPU is available here; use cpu (--device)")]
      if not torch.cuda.is_available() else []),
])
def test_the_command_refuses_bad_arguments_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "fastnst.cli", "app", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.strip() == message


def test_the_webcam_runs_int8_where_it_can(tmp_path: Path, monkeypatch, small_calibration) -> None:
    """Photos stay on the default precision; the live copy for the webcam is INT8 on OpenVINO (when NNCF is
    installed), two frames at once."""
    from fastnst.app.models import LIVE_STREAMS, ModelBook
    from fastnst.inference.engines import openvino_available
    from fastnst.inference.quantize import nncf_available

    if not (openvino_available() and nncf_available()):
        pytest.skip("needs openvino and nncf (the [int8] extra)")
    monkeypatch.delenv("FASTNST_ENGINE")
    monkeypatch.setenv("FASTNST_CACHE", str(tmp_path / "cache"))
    from fastnst.core.device import native_bf16_cpu

    book = ModelBook([small_model(tmp_path / "tiny.safetensors")], tmp_path / "work", device="cpu")
    # The photo copy runs the machine's default precision: bf16 where the CPU runs it natively.
    assert book.stylizer("tiny").engine == ("openvino bf16" if native_bf16_cpu() else "openvino fp32")
    live = book.stylizer("tiny", live=True)
    assert live.engine == "openvino int8" and live.openvino.streams == LIVE_STREAMS
    assert book.stylizer("tiny", live=True) is live  # loaded once
