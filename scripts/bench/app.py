"""How fast the web app is, end to end in a real browser and piece by piece, in one run:

    python -m scripts.bench.app [--model starry_night] [--camera 320x240] [--seconds 20] [--engine auto]

1. webcam mode in headless Chromium, its fake camera playing a clip (``--clip``, default the fox video
   of ../shared/assets, else Chromium's own test pattern): stylized frames shown per second, counted in
   the page, and the server's time per frame;
2. the same frames sent by a Python WebSocket client, three in flight as the page keeps them (the server
   alone, no browser);
3. the stylizer alone, one frame at a time on all cores, at the webcam's precision (INT8 where NNCF is
   installed);
4. photo mode: a photo previewed at 1024 px, the time from upload to the image shown (median of 3).

Everything shares this machine's cores, as it does for a person running the app on a laptop: the
ratios say what the browser and the transport cost next to the network itself.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "assets"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
# Times the stylized frames the page draws (it counts them in #webcam-output's data-frames).
COUNT_FRAMES = """() => {
  window.shownFrames = [];
  new MutationObserver(() => window.shownFrames.push(performance.now()))
    .observe(document.querySelector('#webcam-output'), {attributes: true, attributeFilter: ['data-frames']});
}"""


def camera_file(clip: Path, size: tuple[int, int], folder: Path, seconds: float = 10) -> tuple[Path, list[bytes]]:
    """The first ``seconds`` of ``clip``, cropped to the aspect of ``size`` and scaled to it, as a Y4M file
    (what Chromium's fake camera plays, in a loop), and the same frames as JPEG (what the page sends)."""
    w, h = size
    path, jpegs = folder / "camera.y4m", []
    with av.open(str(clip)) as src, open(path, "wb") as out:
        stream = src.streams.video[0]
        rate = stream.average_rate or 30
        out.write(f"YUV4MPEG2 W{w} H{h} F{rate.numerator}:{rate.denominator} Ip A1:1 C420jpeg\n".encode())
        for i, frame in enumerate(src.decode(stream)):
            if i >= seconds * float(rate):
                break
            image = frame.to_image()
            crop_w, crop_h = min(image.width, image.height * w // h), min(image.height, image.width * h // w)
            left, top = (image.width - crop_w) // 2, (image.height - crop_h) // 2
            image = image.crop((left, top, left + crop_w, top + crop_h)).resize(size, Image.Resampling.BILINEAR)
            small = av.VideoFrame.from_image(image).reformat(format="yuv420p")
            out.write(b"FRAME\n")
            for plane, (pw, ph) in zip(small.planes, [(w, h), (w // 2, h // 2), (w // 2, h // 2)], strict=True):
                rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:ph, :pw]
                out.write(rows.tobytes())
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=85)
            jpegs.append(buffer.getvalue())
    return path, jpegs


class Served:
    """The app with the starter models, in a thread of this process, on a free localhost port."""

    def __init__(self, workdir: Path, engine: str | None, models: list[Path] | None = None) -> None:
        import uvicorn

        from fastnst.app.models import ModelBook
        from fastnst.app.server import create_app, listen

        self.book = ModelBook(models or [], workdir, engine=engine)
        sock = listen("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(self.book, workdir), log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def launch(playwright, camera: Path | None):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Chromium (Debian: apt-get install chromium)")
    args = CHROMIUM_ARGS + ([f"--use-file-for-fake-video-capture={camera}"] if camera else [])
    return playwright.chromium.launch(executable_path=chromium, args=args, headless=True)


def open_page(browser, url: str, viewport: tuple[int, int] = (1280, 860)):
    context = browser.new_context(accept_downloads=True, viewport={"width": viewport[0], "height": viewport[1]})
    context.grant_permissions(["camera"], origin=url)
    page = context.new_page()
    page.goto(url + "/")
    page.wait_for_function("document.querySelectorAll('#model option').length >= 1")
    return page


def cpu_seconds(name: str) -> float:
    """CPU time used so far by the processes whose command line holds ``name`` (Linux /proc)."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if name.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:  # the process ended meanwhile
            continue
    return total


def browser_webcam(browser, url: str, model: str, camera: str, seconds: float) -> tuple[float, float, float, float]:
    """(frames shown per second, median server ms per frame, cores used by Chromium, by this process)
    over ``seconds``, after a warm-up."""
    page = open_page(browser, url)
    page.select_option("#model", model)
    page.click("#tab-webcam")
    page.select_option("#webcam-size", camera)
    page.click("#webcam-start")
    page.wait_for_function("parseFloat(document.querySelector('#fps').textContent) > 0", timeout=120_000)
    page.wait_for_timeout(3000)
    page.evaluate(COUNT_FRAMES)
    server_ms = []
    chromium, own, start = cpu_seconds("chromium"), sum(os.times()[:2]), time.monotonic()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        page.wait_for_timeout(500)
        server_ms.append(float(page.text_content("#server-ms")))
    wall = time.monotonic() - start
    chromium, own = (cpu_seconds("chromium") - chromium) / wall, (sum(os.times()[:2]) - own) / wall
    shown = page.evaluate("window.shownFrames")
    page.click("#webcam-start")
    page.context.close()
    return (len(shown) - 1) * 1000 / (shown[-1] - shown[0]), statistics.median(server_ms), chromium, own


def socket_webcam(url: str, model: str, frames: list[bytes], seconds: float) -> tuple[float, float]:
    """(frames per second, median server ms) for a Python client keeping three frames in flight."""
    from websockets.sync.client import connect

    with connect(url.replace("http", "ws") + "/ws/webcam", max_size=None) as ws:
        ws.send(json.dumps({"model": model}))
        json.loads(ws.recv())
        sent = received = 0
        server_us, start = [], None
        end = time.monotonic() + seconds + 3
        while time.monotonic() < end:
            while sent - received < 3:
                ws.send(frames[sent % len(frames)])
                sent += 1
            reply = ws.recv()
            received += 1
            if start is None and received == 10:  # warm-up done
                start, counted = time.monotonic(), received
            server_us.append(int.from_bytes(reply[:4], "little"))
        return (received - counted) / (time.monotonic() - start), statistics.median(server_us) / 1000


def stylizer_alone(model: str, precision: str, engine: str | None, frame: bytes) -> float:
    """Median ms of the network on one frame at a time, on all cores, at the webcam's precision."""
    from fastnst.inference.stylizer import StylizeOptions, Stylizer

    stylizer = Stylizer.from_file(model, precision=precision, engine=engine)
    image = Image.open(io.BytesIO(frame)).convert("RGB")
    for _ in range(3):
        stylizer.stylize(image, StylizeOptions())
    samples = []
    for _ in range(15):
        start = time.perf_counter()
        stylizer.stylize(image, StylizeOptions())
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def browser_photo(browser, url: str, model: str, photo: Path) -> tuple[float, float, str]:
    """(median ms from choosing the photo to the preview shown, median server ms, preview size)."""
    page = open_page(browser, url)
    page.select_option("#model", model)
    totals, servers = [], []
    for shown, strength in enumerate(("100", "99", "98", "97")):  # each re-stylizes; the first is a warm-up
        page.fill("#strength", strength)
        if strength == "100":
            page.set_input_files("#photo-input", str(photo))
        page.wait_for_function("([n]) => +(document.querySelector('#result').dataset.previews || 0) > n",
                               arg=[shown], timeout=60_000)
        status = page.text_content("#photo-status")
        words = status.split()
        servers.append(float(words[words.index("stylized") + 2]))
        totals.append(float(words[words.index("all") - 3]))
    page.context.close()
    return statistics.median(totals[1:]), statistics.median(servers[1:]), " ".join(status.split()[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="starry_night", help="a starter or model file (default: the "
                        "johnson_small starter starry_night)")
    parser.add_argument("--camera", default="320x240", choices=["320x240", "640x480"])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--engine", default=None, choices=["auto", "torch", "openvino"])
    parser.add_argument("--clip", type=Path, default=SHARED / "video" / "fox.mp4")
    parser.add_argument("--photo", type=Path, default=next(iter(sorted((SHARED / "content").glob("*.jpg"))), None))
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    size = tuple(int(v) for v in args.camera.split("x"))
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        tmp = Path(tmp)
        camera, frames = camera_file(args.clip, size, tmp) if args.clip.is_file() else (None, [])
        models = [Path(args.model)] if Path(args.model).is_file() else []
        model = Path(args.model).stem
        served = Served(tmp / "work", args.engine, models)
        engine, live = served.book.stylizer(model).engine, served.book.stylizer(model, live=True).engine
        browser = launch(playwright, camera)
        try:
            page_fps, page_ms, chromium, own = browser_webcam(browser, served.url, model, args.camera, args.seconds)
            if not frames:
                frames = [Image.new("RGB", size).tobytes()]
            socket_fps, socket_ms = socket_webcam(served.url, model, frames, args.seconds)
            precision = "int8" if live.endswith("int8") else "auto"
            alone_ms = stylizer_alone(args.model, precision, args.engine, frames[0])
            photo = browser_photo(browser, served.url, model, args.photo) if args.photo else None
        finally:
            browser.close()
            served.close()
    print(f"model {model} (webcam: {live}; photos: {engine}), camera {args.camera}, {args.seconds:.0f} s per "
          "measurement")
    print("| path | frames/s | server ms per frame (two at once) | vs stylizer alone |")
    print("|---|---|---|---|")
    ceiling = 1000 / alone_ms
    print(f"| webcam mode in Chromium (end to end) | {page_fps:.1f} | {page_ms:.0f} | {page_fps / ceiling:.2f}x |")
    print(f"| WebSocket client, 3 frames in flight | {socket_fps:.1f} | {socket_ms:.0f} | "
          f"{socket_fps / ceiling:.2f}x |")
    print(f"| stylizer alone (Stylizer.stylize, webcam precision, one frame at a time) | {ceiling:.1f} | "
          f"{alone_ms:.0f} | 1.00x |")
    print(f"during the webcam run: Chromium used {chromium:.2f} cores, the server (and this script) {own:.2f}, "
          f"of {os.cpu_count()}")
    if photo:
        print(f"photo mode, {photo[2]} preview: {photo[0]:.0f} ms from the request to the image shown "
              f"({photo[1]:.0f} ms stylizing on the server), median of 3")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
