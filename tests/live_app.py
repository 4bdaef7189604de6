"""The web app served for real (uvicorn on a free localhost port, in a thread) for the API and browser
tests, with two small seeded models: a single-style one and a three-style one."""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import torch

from fastnst.core.modelfile import ModelMeta, save_stylizer
from fastnst.core.transformer import StyleInstanceNorm

from samples import spread_network

STYLES = ["ink", "fire", "moss"]


def small_model(path: Path, styles: int = 1, seed: int = 1) -> Path:
    """A tiny network whose (γ, β) are spread out, so that styles differ visibly from each other and
    from the photo; the last norm's β is shifted per style, so each style has its own palette."""
    net = spread_network(styles, seed=seed)
    norms = [m for m in net.modules() if isinstance(m, StyleInstanceNorm)]
    if styles > 1:
        with torch.no_grad():
            norms[-1].bias += torch.linspace(-1.5, 1.5, styles)[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    names = STYLES[:styles] if styles > 1 else []
    meta = ModelMeta(style_name=path.stem, styles=names, style_images=[f"{n}.jpg" for n in names],
                     description="a seeded random network for tests")
    return save_stylizer(net, path, meta)


def app_models(folder: Path) -> list[Path]:
    """The two models the app tests offer: ``tiny`` (one style) and ``trio`` (``STYLES``)."""
    return [small_model(folder / "tiny.safetensors"), small_model(folder / "trio.safetensors", styles=3, seed=2)]


def make_clip(path: Path, frames: int = 12, size: tuple[int, int] = (64, 48), audio: bool = True) -> Path:
    """A short MP4 (H.264 + AAC) of moving gradients."""
    w, h = size
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=12)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        sound = out.add_stream("aac", rate=16000) if audio else None
        for i in range(frames):
            yy, xx = np.mgrid[0:h, 0:w]
            rgb = np.stack([(xx + 4 * i) % 256, yy * 4 % 256, np.full_like(xx, 128)], -1).astype(np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            samples = (np.sin(np.arange(16000) / 8) * 8000).astype(np.int16)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            frame.sample_rate = 16000
            for packet in [*sound.encode(frame), *sound.encode(None)]:
                out.mux(packet)
    return path


class LiveApp:
    """``with LiveApp(models, workdir) as app: app.url``; stops the server and the video worker on exit."""

    def __init__(self, models: list[Path], workdir: Path, fit_options: object = None,
                 engine: str | None = "torch") -> None:
        import uvicorn

        from fastnst.app.models import ModelBook
        from fastnst.app.server import create_app, listen

        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.book = ModelBook(models, workdir, device="cpu", engine=engine)  # None: what a user gets
        self.sock = listen("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        app = create_app(self.book, workdir, fit_options=fit_options)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveApp:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the app did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def get(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        return request(self.url + path)

    def post(self, path: str, fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[int, bytes, dict]:
        return request(self.url + path, fields, files)

    def json(self, path: str, fields: dict | None = None, files: dict | None = None) -> tuple[int, dict]:
        status, body, _ = request(self.url + path, fields, files) if fields is not None or files else self.get(path)
        return status, json.loads(body)


def request(url: str, fields: dict[str, str] | None = None,
            files: dict[str, tuple[str, bytes]] | None = None) -> tuple[int, bytes, dict[str, str]]:
    """GET, or a multipart POST when fields or files are given: (status, body, headers)."""
    data, headers = None, {}
    if fields is not None or files:
        boundary = uuid.uuid4().hex
        body = io.BytesIO()
        for name, value in (fields or {}).items():
            body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        for name, (filename, content) in (files or {}).items():
            body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                       f"Content-Type: application/octet-stream\r\n\r\n".encode())
            body.write(content + b"\r\n")
        body.write(f"--{boundary}--\r\n".encode())
        data, headers = body.getvalue(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=60) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def served(tmp_path_factory) -> Iterator[LiveApp]:
    """The app over ``app_models``, served for a test module: ``yield from served(tmp_path_factory)``."""
    root = tmp_path_factory.mktemp("app")
    with LiveApp(app_models(root / "models"), root / "work") as live:
        yield live
