"""Real-browser tests: the app's page in headless Chromium (the system's, driven by Playwright), with a
fake camera. Skipped, with the reason, where Playwright or Chromium is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from live_app import LiveApp, small_model

CHROMIUM = os.environ.get("FASTNST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
# The flags a root CI container needs, the fake camera, and no calls home (the network is closed).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "browser tests need Playwright: pip install -e '.[dev]'"
    try:
        import starlette  # noqa: F401
    except ImportError:
        reason = "browser tests need the web app: pip install -e '.[app]'"
    if CHROMIUM is None:
        reason = "browser tests need Chromium (Debian: apt-get install chromium), or FASTNST_CHROMIUM=path"
    for item in items:
        item.add_marker(pytest.mark.browser)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def live(tmp_path_factory) -> LiveApp:
    root = tmp_path_factory.mktemp("browser-app")
    models = [small_model(root / "models" / "tiny.safetensors"),
              small_model(root / "models" / "trio.safetensors", styles=3, seed=2)]
    with LiveApp(models, root / "work") as app:
        yield app


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


def pick_model(page, model: str) -> None:
    page.select_option("#model", model)


def upload(page, selector: str, path: Path) -> None:
    page.set_input_files(selector, str(path))
