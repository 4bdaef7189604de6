"""Screenshots of the web app's three modes, as README shows them:

    python -m scripts.demo.app_screenshots [--out docs]

Real starter models on the held-out photos of ../shared/assets: photo mode with a blend of two styles of
the multi-style starter, webcam mode with Chromium's fake camera playing the fox clip, video mode after
a short cut of that clip was stylized. Writes app_photo.jpg, app_webcam.jpg, app_video.jpg.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import av

from scripts.bench.app import SHARED, Served, camera_file, launch, open_page


def short_clip(src: Path, dst: Path, seconds: float = 2.0, width: int = 320) -> Path:
    """The first ``seconds`` of ``src`` at ``width`` px, H.264 (a quick upload for video mode)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        rate = stream.average_rate or 25
        height = round(stream.height * width / stream.width / 2) * 2
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        for i, frame in enumerate(inp.decode(stream)):
            if i >= seconds * float(rate):
                break
            for packet in video.encode(frame.reformat(width=width, height=height, format="yuv420p")):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    return dst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "docs")
    parser.add_argument("--photo", type=Path, default=SHARED / "content" / "golden_gate.jpg")
    parser.add_argument("--clip", type=Path, default=SHARED / "video" / "fox.mp4")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        tmp = Path(tmp)
        camera, _ = camera_file(args.clip, (320, 240), tmp)
        served = Served(tmp / "work", None)
        browser = launch(playwright, camera)
        try:
            page = open_page(browser, served.url, (1280, 760))
            page.select_option("#model", "multistyle")
            page.fill("#style-sliders input[data-style=starry_night]", "60")
            page.fill("#style-sliders input[data-style=great_wave]", "40")
            page.set_input_files("#photo-input", str(args.photo))
            page.wait_for_function("+(document.querySelector('#result').dataset.previews || 0) > 0", timeout=120_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(args.out / "app_photo.jpg"), type="jpeg", quality=85)
            page.context.close()

            page = open_page(browser, served.url, (1280, 760))
            page.select_option("#model", "starry_night")
            page.click("#tab-webcam")
            page.click("#webcam-start")
            page.wait_for_function("parseFloat(document.querySelector('#fps').textContent) > 0", timeout=120_000)
            page.wait_for_timeout(6000)
            page.screenshot(path=str(args.out / "app_webcam.jpg"), type="jpeg", quality=85)
            page.click("#webcam-start")
            page.context.close()

            page = open_page(browser, served.url, (1280, 760))
            page.select_option("#model", "the_scream")
            page.click("#tab-video")
            page.set_input_files("#video-input", str(short_clip(args.clip, tmp / "fox_2s.mp4")))
            page.wait_for_selector("#video-download:not([hidden])", timeout=300_000)
            page.eval_on_selector("#video-result", "v => new Promise(r => { v.onseeked = r; v.currentTime = 1; })")
            page.screenshot(path=str(args.out / "app_video.jpg"), type="jpeg", quality=85)
            page.context.close()
        finally:
            browser.close()
            served.close()
    for name in ("app_photo.jpg", "app_webcam.jpg", "app_video.jpg"):
        print(args.out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
