"""The app's "Add a style": a painting fitted in a child process, with progress, preview, cancel and the
new model offered and downloadable; the app keeps serving while it runs."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("starlette", reason="the web app needs the [app] extra: pip install -e '.[app]'")

from fastnst.core.modelfile import load_network  # noqa: E402
from fastnst.inference.fitting import FitOptions  # noqa: E402

from live_app import LiveApp, request  # noqa: E402
from samples import make_image, tiny_base  # noqa: E402


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> LiveApp:
    root = tmp_path_factory.mktemp("fitapp")
    for i in range(2):
        make_image(root / "photos" / f"p{i}.png", (64, 48), seed=i)
    (root / "models").mkdir()
    base = tiny_base(root / "models" / "duo.safetensors")
    options = FitOptions(steps=6, image_size=32, batch_size=2, style_size=64, vgg_weights="random", device="cpu",
                         photos=root / "photos")
    mp = pytest.MonkeyPatch()
    mp.setenv("FASTNST_CACHE", str(root / "cache"))  # the child process inherits it
    with LiveApp([base], root / "work", options) as live:
        live.root = root
        yield live
    mp.undo()


def painting(tmp_path: Path, name: str = "Sunset.png", seed: int = 4) -> bytes:
    return make_image(tmp_path / name, (96, 80), seed=seed).read_bytes()


def wait(app: LiveApp, fit_id: str, until: tuple[str, ...], seconds: float = 120) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        status, body = app.json(f"/api/styles/{fit_id}")
        assert status == 200
        if body["state"] in until:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def test_a_painting_becomes_a_style_of_a_new_model(app: LiveApp, tmp_path: Path) -> None:
    photo = make_image(tmp_path / "p.png").read_bytes()
    status, body = app.json("/api/styles", {"base": "duo"}, {"painting": ("Sunset.png", painting(tmp_path)),
                                                            "photo": ("p.png", photo)})
    assert status == 200 and body["state"] == "starting" and body["name"] == "Sunset.png"
    done = wait(app, body["id"], ("done", "error", "cancelled"))
    assert done["state"] == "done", done
    assert done["step"] == done["steps"] == 6 and done["style"] == "Sunset" and done["previews"] >= 1
    status, preview, headers = app.get(f"/api/styles/{body['id']}/preview")
    assert status == 200 and Image.open(io.BytesIO(preview)).size == (48, 40)
    models = {m["id"]: m for m in app.json("/api/models")[1]["models"]}
    assert models[done["model"]]["styles"] == ["ink", "fire", "Sunset"]
    assert models[done["model"]]["default_style"] == "Sunset"  # the page opens the model on the painting's style
    status, result, _ = app.post("/api/stylize", {"model": done["model"], "style": "Sunset", "size": "full"},
                                 {"image": ("x.png", make_image(tmp_path / "x.png", (40, 30)).read_bytes())})
    assert status == 200 and Image.open(io.BytesIO(result)).size == (40, 30)
    status, data, headers = app.get(f"/api/models/{done['model']}/file")
    assert status == 200 and f'{done["model"]}.safetensors' in headers["content-disposition"]
    (tmp_path / "down.safetensors").write_bytes(data)
    assert load_network(tmp_path / "down.safetensors")[1].styles[-1] == "Sunset"


def test_cancel_stops_a_fit_and_the_app_serves_meanwhile(app: LiveApp, tmp_path: Path) -> None:
    status, body = app.json("/api/styles", {"base": "duo", "steps": "2000"},
                            {"painting": ("Long.png", painting(tmp_path, "Long.png", seed=8))})
    assert status == 200
    first = body["id"]
    # A second fit while one runs is refused, in one line.
    status, refused = app.json("/api/styles", {"base": "duo"}, {"painting": ("b.png", painting(tmp_path, "b.png"))})
    assert status == 400 and refused["error"].startswith("Long.png is being fitted")
    wait(app, first, ("running",))
    status, models = app.json("/api/models")  # the app answers while the child fits
    assert status == 200 and models["models"]
    status, cancelled = app.json(f"/api/styles/{first}/cancel", {}, {})
    assert status == 200
    assert wait(app, first, ("cancelled", "done", "error"))["state"] == "cancelled"


@pytest.mark.parametrize(("name", "data", "message"), [
    ("notes.txt", b"just text", "notes.txt is not an image Pillow can read"),
    ("tiny.png", None, "tiny.png is 40x40: a painting needs at least 64 px"),
])
def test_bad_paintings_get_a_message(app: LiveApp, tmp_path: Path, name: str, data: bytes | None,
                                     message: str) -> None:
    data = data if data is not None else make_image(tmp_path / name, (40, 40)).read_bytes()
    status, body = app.json("/api/styles", {"base": "duo"}, {"painting": (name, data)})
    assert status == 400 and body["error"].startswith(message)  # the name as uploaded, not the server's path
    status, body = app.json("/api/styles", {"base": "nope"}, {"painting": ("a.png", painting(tmp_path))})
    assert status == 400 and "no model 'nope'" in body["error"]
    status, body = app.json("/api/styles", {"steps": "0"}, {"painting": ("a.png", painting(tmp_path))})
    assert status == 400 and "steps must be a whole number from 1 to 5000" in body["error"]
    assert json.loads(request(app.url + "/api/styles/unknown")[1])["error"].startswith("no style fit")


def test_refused_paintings_leave_nothing_on_disk_and_odd_steps_are_a_400(app: LiveApp, tmp_path: Path) -> None:
    before = set((app.workdir / "paintings").rglob("*")) if (app.workdir / "paintings").exists() else set()
    for _ in range(3):
        status, _body = app.json("/api/styles", {"base": "duo"}, {"painting": ("junk.jpg", b"x" * 200_000)})
        assert status == 400
    after = set((app.workdir / "paintings").rglob("*")) if (app.workdir / "paintings").exists() else set()
    assert after == before
    for steps in ("²", "١٢", "1e3", "-4"):  # digits Python's isdigit accepts but int() or the range refuses
        status, body = app.json("/api/styles", {"steps": steps}, {"painting": ("a.png", painting(tmp_path))})
        assert status == 400 and "steps must be a whole number" in body["error"]


def test_a_fit_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    # kill -9 of the app must not leave its fit running (it used to be re-parented and fit on for minutes).
    import os
    import signal
    import subprocess
    import sys

    script = tmp_path / "parent.py"
    script.write_text(
        "import multiprocessing, sys, time\n"
        "from fastnst.app.fits import _die_with\n"
        "def child(parent):\n"
        "    _die_with(parent)\n"
        "    time.sleep(120)\n"
        "if __name__ == '__main__':\n"
        "    import os\n"
        "    p = multiprocessing.get_context('spawn').Process(target=child, args=(os.getpid(),))\n"
        "    p.start()\n"
        "    print(p.pid, flush=True)\n"
        "    time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(1.0)  # the child is running its watch
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        if Path(f"/proc/{child}/stat").exists() and Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
            return  # a zombie: dead, waiting for init to reap it
        time.sleep(0.2)
    os.kill(child, signal.SIGKILL)
    raise AssertionError("the child outlived its parent")
