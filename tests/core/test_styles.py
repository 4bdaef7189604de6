"""Style images from URLs (a local HTTP server on loopback) and the offline VGG error."""

import functools
import http.server
import threading
import urllib.error
from pathlib import Path

import pytest
from torchvision import models

from fastnst.core import styles as sources
from fastnst.core.errors import FastNSTError
from fastnst.core.vgg import VGGFeatures

from conftest import make_image


@pytest.fixture
def server(tmp_path: Path):  # noqa: ANN201
    root = tmp_path / "www"
    make_image(root / "painting.jpg", (50, 40))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_url_is_downloaded_once_into_the_cache(server: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FASTNST_CACHE", str(tmp_path / "cache"))
    first = sources.resolve(f"{server}/painting.jpg")
    assert first.is_file() and first.parent == tmp_path / "cache" / "styles"
    (tmp_path / "www" / "painting.jpg").unlink()  # a second download would now fail
    assert sources.resolve(f"{server}/painting.jpg") == first
    image, sha = sources.load_style(f"{server}/painting.jpg", 32)
    assert image.shape[-2:] == (26, 32) and sha == sources.sha256_file(first)


def test_a_missing_url_is_a_clear_error_and_caches_nothing(server: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FASTNST_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FastNSTError, match="could not download .*nope.jpg.*local copy"):
        sources.resolve(f"{server}/nope.jpg")
    assert not any((tmp_path / "cache" / "styles").iterdir())


def test_offline_imagenet_weights_name_the_local_file_option(monkeypatch) -> None:
    def offline(**kwargs):  # noqa: ANN003, ANN202
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(models, "vgg16", offline)
    with pytest.raises(FastNSTError, match=r"local torchvision vgg16 state dict") as err:
        VGGFeatures("vgg16", ["relu2_2"], weights="imagenet")
    assert "\n" not in str(err.value) and err.value.param == "vgg_weights"


def test_builtin_style_images_ship_with_the_package() -> None:
    names = sources.builtin_styles()
    # The eight starters' paintings and the twenty more that multistyle learned; mosaic's licence is unknown.
    assert len(names) == 28 and "starry_night" in names and "van_gogh_olive_trees" in names and "mosaic" not in names
    image, _ = sources.load_style("builtin:great_wave", 64)
    assert max(image.shape[-2:]) == 64
    with pytest.raises(FastNSTError, match="no built-in style image 'nope'"):
        sources.resolve("builtin:nope")
