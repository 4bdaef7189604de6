"""The page as a person uses it, in headless Chromium: photo, style switching, webcam, video, bad input.
Chromium is the system's (Debian: apt-get install chromium), driven by Playwright, with a fake camera;
skipped, with the reason, where Playwright, the web app's extra or Chromium is missing."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from live_app import LiveApp, app_models, make_clip, small_model
from samples import make_image, tiny_base

CHROMIUM = os.environ.get("FASTNST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
# The flags a root CI container needs, the fake camera, and no calls home (the network is closed).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def missing() -> str | None:
    """Why these tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
        import starlette  # noqa: F401
    except ImportError as err:
        return f"browser tests need {err.name.split('.')[0]}: pip install -e '.[dev]'"
    if CHROMIUM is None:
        return "browser tests need Chromium (Debian: apt-get install chromium), or FASTNST_CHROMIUM=path"
    return None


pytestmark = [pytest.mark.browser, pytest.mark.skipif(missing() is not None, reason=missing() or "")]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> LiveApp:
    from fastnst.inference.fitting import FitOptions

    root = tmp_path_factory.mktemp("browser-app")
    models = app_models(root / "models")
    for i in range(2):
        make_image(root / "photos" / f"p{i}.png", (64, 48), seed=i)
    fitting = FitOptions(steps=8, image_size=32, batch_size=2, style_size=64, vgg_weights="random", device="cpu",
                         photos=root / "photos")
    mp = pytest.MonkeyPatch()
    mp.setenv("FASTNST_CACHE", str(root / "cache"))
    with LiveApp([*models, tiny_base(root / "models" / "duo.safetensors")], root / "work", fitting) as app:
        yield app
    mp.undo()


@pytest.fixture
def page(browser, live: LiveApp):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 860})
    context.grant_permissions(["camera"], origin=live.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(live.url + "/")
    page.wait_for_function("document.querySelectorAll('#model option').length >= 2")
    yield page
    context.close()
    assert errors == [], f"the page threw: {errors}"


# Mean absolute difference (0-255) between two <img> elements of one size, drawn onto canvases.
DIFFERENCE = """([a, b]) => {
  const pixels = (img) => {
    const c = Object.assign(document.createElement('canvas'), {width: img.naturalWidth, height: img.naturalHeight});
    const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
    return ctx.getImageData(0, 0, c.width, c.height).data;
  };
  const p = pixels(document.querySelector(a)), q = pixels(document.querySelector(b));
  let sum = 0; for (let i = 0; i < p.length; i++) sum += Math.abs(p[i] - q[i]);
  return sum / p.length;
}"""
SNAPSHOT = """(sel) => {
  const img = document.querySelector(sel);
  const c = Object.assign(document.createElement('canvas'), {width: img.naturalWidth, height: img.naturalHeight});
  c.getContext('2d').drawImage(img, 0, 0);
  return c.toDataURL('image/png');
}"""


def previews(page) -> int:
    """How many previews the page has shown (it counts them on #result)."""
    return int(page.get_attribute("#result", "data-previews") or 0)


def stylized(page, before: int) -> str:
    """Wait until the page has shown more than ``before`` previews; the status line."""
    page.wait_for_function("([n]) => +(document.querySelector('#result').dataset.previews || 0) > n"
                           " && !document.querySelector('#photo-status').textContent.startsWith('stylizing')",
                           arg=[before])
    return page.text_content("#photo-status")


def test_a_photo_is_stylized_beside_the_original_and_downloads_at_full_size(page, tmp_path: Path) -> None:
    page.select_option("#model", "tiny")
    page.set_input_files("#photo-input", str(make_image(tmp_path / "street.png", (64, 48))))
    status = stylized(page, 0)
    assert status.startswith("64 × 48 px: stylized in")
    size = page.evaluate("[document.querySelector('#result').naturalWidth, document.querySelector('#result')"
                         ".naturalHeight]")
    assert size == [64, 48]
    assert page.evaluate(DIFFERENCE, ["#original", "#result"]) > 10
    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename == "street_tiny.png"
    saved = tmp_path / "saved.png"
    download.value.save_as(saved)
    assert Image.open(saved).size == (64, 48)


def test_switching_styles_and_blending_them_changes_the_result(page, tmp_path: Path) -> None:
    page.select_option("#model", "trio")
    page.wait_for_selector("#styles:not([hidden])")
    assert page.eval_on_selector_all("#style-sliders input[type=range]", "els => els.map(e => e.dataset.style)") \
        == ["ink", "fire", "moss"]
    page.set_input_files("#photo-input", str(make_image(tmp_path / "p.png", (64, 48))))
    stylized(page, 0)
    ink, shown = page.evaluate(SNAPSHOT, "#result"), previews(page)
    page.click("button[data-solo=fire]")
    stylized(page, shown)
    fire, shown = page.evaluate(SNAPSHOT, "#result"), previews(page)
    assert fire != ink
    page.fill("#style-sliders input[data-style=ink]", "100")  # fire 100 + ink 100: a half-half blend
    stylized(page, shown)
    assert page.evaluate(SNAPSHOT, "#result") not in (ink, fire)
    for name in ("ink", "fire"):
        page.fill(f"#style-sliders input[data-style={name}]", "0")
    page.wait_for_selector("#message:not([hidden])")
    assert page.text_content("#message") == "style weights must not all be zero"


MEAN_COLOUR = """(sel) => {
  const c = document.querySelector(sel);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, mean = [0, 0, 0];
  for (let i = 0; i < d.length; i += 4) for (let k = 0; k < 3; k++) mean[k] += d[i + k] / (d.length / 4);
  return mean;
}"""


def live_colours(page, samples: int = 6) -> np.ndarray:
    """The mean colour of the stylized webcam frame, sampled a few times (the fake camera moves)."""
    colours = []
    for _ in range(samples):
        page.wait_for_timeout(250)
        colours.append(page.evaluate(MEAN_COLOUR, "#webcam-output"))
    return np.array(colours)


def test_webcam_frames_are_stylized_live_and_the_style_switches_while_running(page) -> None:
    page.select_option("#model", "trio")
    page.click("#tab-webcam")
    page.click("#webcam-start")
    page.wait_for_function("parseFloat(document.querySelector('#fps').textContent) > 0", timeout=30_000)
    assert page.evaluate("[document.querySelector('#webcam-output').width, document.querySelector('#webcam-output')"
                         ".height]") == [320, 240]
    assert float(page.text_content("#server-ms")) > 0 and float(page.text_content("#latency-ms")) > 0
    ink = live_colours(page)
    page.click("button[data-solo=moss]")
    page.wait_for_timeout(1500)  # the frames in flight under the old style drain
    moss = live_colours(page)
    # Each style paints its own palette: the switch moves the mean colour far more than the camera's motion.
    jitter = max(np.ptp(ink, axis=0).max(), np.ptp(moss, axis=0).max())
    assert np.abs(ink.mean(0) - moss.mean(0)).max() > 3 * jitter + 2, (ink, moss)
    assert float(page.text_content("#fps")) > 0, "the frame rate read-out should stay positive"
    assert page.is_hidden("#message")
    page.click("#webcam-start")  # stop
    assert page.text_content("#webcam-start") == "Start the camera" and page.text_content("#fps") == "–"
    page.click("#webcam-start")  # and again: frames come back
    page.wait_for_function("parseFloat(document.querySelector('#fps').textContent) > 0", timeout=30_000)
    assert page.is_hidden("#message")


def test_a_clip_is_uploaded_stylized_with_progress_and_downloaded(page, tmp_path: Path) -> None:
    page.select_option("#model", "tiny")
    page.click("#tab-video")
    page.set_input_files("#video-input", str(make_clip(tmp_path / "walk.mp4", frames=12)))
    page.wait_for_selector("#video-download:not([hidden])", timeout=60_000)
    assert page.text_content("#video-status") == "walk.mp4: 12 frames stylized"
    assert page.evaluate("document.querySelector('#video-progress').value") == 1
    with page.expect_download() as download:
        page.click("#video-download")
    assert download.value.suggested_filename == "walk_tiny.mp4"
    saved = tmp_path / "out.mp4"
    download.value.save_as(saved)
    with av.open(str(saved)) as clip:
        assert clip.streams.audio, "the audio was dropped"
        frames = [f.to_ndarray(format="rgb24") for f in clip.decode(video=0)]
    assert len(frames) == 12 and frames[0].shape == (48, 64, 3)


def test_bad_input_shows_a_message_and_the_page_keeps_working(page, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a photo")
    page.select_option("#model", "tiny")
    page.set_input_files("#photo-input", str(tmp_path / "notes.txt"))
    page.wait_for_selector("#message:not([hidden])")
    assert page.text_content("#message") == "notes.txt is not an image Pillow can read"

    Image.new("1", (12000, 11000)).save(tmp_path / "huge.png")
    page.set_input_files("#photo-input", str(tmp_path / "huge.png"))
    page.wait_for_function("document.querySelector('#message').textContent.includes('132 Mpx')")

    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 64)
    page.set_input_files("#model-input", str(tmp_path / "broken.safetensors"))
    page.wait_for_function("document.querySelector('#message').textContent"
                           ".startsWith('broken.safetensors is not a readable .safetensors model')")

    with av.open(str(tmp_path / "sound.mp4"), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.int16), format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    page.click("#tab-video")
    page.set_input_files("#video-input", str(tmp_path / "sound.mp4"))
    page.wait_for_function("document.querySelector('#message').textContent === 'sound.mp4 has no video stream'")

    page.click("#tab-photo")
    shown = previews(page)
    page.set_input_files("#photo-input", str(make_image(tmp_path / "fine.jpg", (40, 32))))
    assert stylized(page, shown).startswith("40 × 32 px")
    assert page.is_hidden("#message")


def test_an_uploaded_model_is_offered_and_used(page, tmp_path: Path) -> None:
    page.set_input_files("#model-input", str(small_model(tmp_path / "mine.safetensors", seed=5)))
    page.wait_for_function("document.querySelector('#model').value === 'mine'")
    assert "uploaded" in page.text_content("#model option[value=mine]")
    page.set_input_files("#photo-input", str(make_image(tmp_path / "p.png", (48, 40))))
    assert stylized(page, 0).startswith("48 × 40 px")


def test_a_tiff_the_browser_cannot_show_is_previewed_by_the_server(page, tmp_path: Path) -> None:
    # Chromium does not decode TIFF: the original is shown from the server's copy at strength 0.
    page.select_option("#model", "tiny")
    page.set_input_files("#photo-input", str(make_image(tmp_path / "scan.tif", (56, 40))))
    stylized(page, 0)
    page.wait_for_function("document.querySelector('#original').naturalWidth === 56")
    assert page.get_attribute("#original", "data-fallback") == "scan.tif"
    assert page.evaluate(DIFFERENCE, ["#original", "#result"]) > 10


DROP_OR_PASTE = """async ([how, name, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, {type: 'image/png'}));
  const event = how === 'drop' ? new DragEvent('drop', {dataTransfer: data, bubbles: true})
                               : new ClipboardEvent('paste', {clipboardData: data, bubbles: true});
  (how === 'drop' ? document.querySelector('#drop') : document).dispatchEvent(event);
}"""


def test_a_photo_can_be_dropped_or_pasted(page, tmp_path: Path) -> None:
    page.select_option("#model", "tiny")
    for how, size in (("drop", (40, 30)), ("paste", (36, 28))):
        shown = previews(page)
        data = base64.b64encode(make_image(tmp_path / f"{how}.png", size).read_bytes()).decode()
        page.evaluate(DROP_OR_PASTE, [how, f"{how}.png", data])
        assert stylized(page, shown).startswith(f"{size[0]} × {size[1]} px"), how


def test_a_dropped_painting_becomes_a_style_with_progress_and_a_download(page, tmp_path: Path) -> None:
    page.select_option("#model", "duo")
    page.set_input_files("#photo-input", str(make_image(tmp_path / "photo.png", (64, 48))))
    page.wait_for_function("document.querySelector('#result').naturalWidth > 0")
    page.set_input_files("#painting-input", str(make_image(tmp_path / "Harbour.png", (96, 80), seed=3)))
    page.wait_for_function("document.querySelector('#fit-status').textContent.includes('is now the style')",
                           timeout=120_000)
    assert page.locator("#fit-status").text_content() == "Harbour.png is now the style “Harbour” of Harbour"
    assert page.input_value("#model") == "Harbour"
    assert page.locator("#style-sliders input[data-style='Harbour']").input_value() == "100"
    assert page.locator("#style-sliders input[data-style='ink']").input_value() == "0"
    # The last preview may arrive with the final poll: it loads a moment after the status line.
    page.wait_for_function("document.querySelector('#fit-preview').naturalWidth > 0")
    with page.expect_download() as download:
        page.click("#fit-download")
    assert download.value.suggested_filename == "Harbour.safetensors"


def test_a_painting_that_is_not_an_image_is_one_message(page, tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("not a picture")
    page.set_input_files("#painting-input", str(tmp_path / "notes.png"))
    page.wait_for_selector("#message:not([hidden])")
    assert page.locator("#message").text_content() == "notes.png is not an image Pillow can read"
