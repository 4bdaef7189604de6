"""Inference on images with a random-weight network (the looks are meaningless; the plumbing is not)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastnst import Stylizer
from fastnst.core.color import preserve_color, rgb_to_ycbcr
from fastnst.core.errors import FastNSTError
from fastnst.core.images import load_rgb, to_tensor
from fastnst.inference.stylizer import StylizeOptions

from conftest import make_image
from samples import tiny_model


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    return tiny_model(tmp_path / "toy.safetensors", residual=2, steps=0)


@pytest.fixture(params=["fp32", "bf16"])
def stylizer(model_path: Path, request) -> Stylizer:
    # Both precisions on every machine, named: "auto" would test bf16 on some CPUs and fp32 on others.
    return Stylizer.from_file(model_path, device="cpu", precision=request.param)


def test_stylize_returns_an_image_of_the_same_size(stylizer: Stylizer, tmp_path: Path) -> None:
    img = Image.open(make_image(tmp_path / "a.png", (37, 23)))
    out = stylizer.stylize(img)
    assert out.size == (37, 23) and out.mode == "RGB"
    assert np.abs(np.asarray(out, float) - np.asarray(img, float)).mean() > 1  # it did something


def test_max_size_bounds_the_long_side(stylizer: Stylizer, tmp_path: Path) -> None:
    img = Image.open(make_image(tmp_path / "a.png", (80, 40)))
    assert stylizer.stylize(img, max_size=40).size == (40, 20)


def test_scale_runs_the_network_at_another_size_but_keeps_the_output_size(stylizer: Stylizer,
                                                                          tmp_path: Path) -> None:
    img = Image.open(make_image(tmp_path / "a.png", (64, 48)))
    full, half = stylizer.stylize(img), stylizer.stylize(img, scale=0.5)
    assert half.size == (64, 48)
    assert np.abs(np.asarray(full, float) - np.asarray(half, float)).mean() > 1


def test_strength_zero_returns_the_input_exactly(stylizer: Stylizer, tmp_path: Path) -> None:
    img = Image.open(make_image(tmp_path / "a.png", (40, 30))).convert("RGB")
    assert np.array_equal(np.asarray(stylizer.stylize(img, strength=0)), np.asarray(img))


def test_half_strength_lies_between_photo_and_full_style(stylizer: Stylizer, tmp_path: Path) -> None:
    img = Image.open(make_image(tmp_path / "a.png", (40, 30))).convert("RGB")
    x, full = np.asarray(img, float), np.asarray(stylizer.stylize(img), float)
    half = np.asarray(stylizer.stylize(img, strength=0.5), float)
    assert np.abs(half - (x + full) / 2).max() <= 1.0  # rounding to 8 bits only


def test_preserve_color_keeps_the_chroma_of_the_photo() -> None:
    content = 0.25 + 0.5 * torch.rand(1, 3, 16, 16)  # in gamut whatever luminance is put in
    stylized = 0.3 + 0.4 * torch.rand(1, 3, 16, 16)
    out = preserve_color(stylized, content)
    torch.testing.assert_close(rgb_to_ycbcr(out)[:, 1:], rgb_to_ycbcr(content)[:, 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(rgb_to_ycbcr(out)[:, :1], rgb_to_ycbcr(stylized)[:, :1], atol=1e-5, rtol=0)


def test_preserve_color_end_to_end_moves_chroma_towards_the_photo(stylizer: Stylizer, tmp_path: Path) -> None:
    img = Image.open(make_image(tmp_path / "a.png", (40, 30))).convert("RGB")
    plain, kept = stylizer.stylize(img), stylizer.stylize(img, preserve_color=True)
    chroma = lambda im: rgb_to_ycbcr(to_tensor(im))[:, 1:]  # noqa: E731
    # Not exact: where the stylized luminance is near black or white the photo's chroma is out of gamut.
    assert (chroma(kept) - chroma(img)).abs().mean() < 0.5 * (chroma(plain) - chroma(img)).abs().mean()


def test_tiled_matches_untiled_without_seams(stylizer: Stylizer, tmp_path: Path) -> None:
    x = load_rgb(make_image(tmp_path / "tile.png", (96, 80), seed=3))
    whole = stylizer.stylize_tensor(x)
    tiled = stylizer.stylize_tensor(x, StylizeOptions(tile=48, overlap=16))
    diff = (whole - tiled).abs()
    # Tolerance: each tile sees 16 px of real context; beyond that its padding differs from the whole
    # image's pixels. Measured: mean 8e-4, max 0.04 for 48 px tiles with this network.
    assert diff.mean() < 2e-3 and diff.max() < 0.08
    # No seam: the tiled output is no rougher across tile borders than the untiled one.
    rough = lambda t: (t[..., 1:] - t[..., :-1]).abs()[..., 28:36].mean()  # noqa: E731  (first tile border)
    assert rough(tiled) < 1.25 * rough(whole)


def test_shared_norm_statistics_are_what_make_tiles_match(stylizer: Stylizer, tmp_path: Path, monkeypatch) -> None:
    x = load_rgb(make_image(tmp_path / "tile.png", (96, 80), seed=3))
    whole = stylizer.stylize_tensor(x)
    shared = (stylizer.stylize_tensor(x, StylizeOptions(tile=48, overlap=16)) - whole).abs().mean()
    from contextlib import nullcontext

    import fastnst.inference.stylizer as mod

    monkeypatch.setattr(mod, "fixed_norm_stats", lambda *a: nullcontext())  # each tile its own stats
    independent = (stylizer.stylize_tensor(x, StylizeOptions(tile=48, overlap=16)) - whole).abs().mean()
    assert shared < 0.5 * independent


def test_automatic_tiling_when_memory_is_short(stylizer: Stylizer, monkeypatch) -> None:
    import fastnst.inference.stylizer as mod

    calls = []
    monkeypatch.setattr(mod, "available_memory", lambda device: 1000)
    monkeypatch.setattr(mod, "run_tiled", lambda *a, **k: calls.append(a) or torch.zeros(1, 3, 2000, 40))
    stylizer.stylize_tensor(torch.rand(1, 3, 2000, 40))
    assert calls and calls[0][2] == 1024
    calls.clear()
    stylizer.stylize_tensor(torch.rand(1, 3, 2000, 40), StylizeOptions(tile=0))  # 0: never tile
    assert not calls


def test_batches_of_one_size_match_single_images(stylizer: Stylizer, tmp_path: Path) -> None:
    imgs = [Image.open(make_image(tmp_path / f"{i}.png", (32, 24), seed=i)) for i in range(3)]
    imgs.append(Image.open(make_image(tmp_path / "odd.png", (20, 24))))
    batch = stylizer.stylize_many(imgs)
    for img, out in zip(imgs, batch, strict=True):
        assert np.abs(np.asarray(out, int) - np.asarray(stylizer.stylize(img), int)).max() <= 1


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "LA"])
def test_other_modes_are_converted(stylizer: Stylizer, tmp_path: Path, mode: str) -> None:
    ext = "jpg" if mode == "CMYK" else "png"
    img = Image.open(make_image(tmp_path / f"a.{ext}", (30, 20), mode=mode))
    out = stylizer.stylize(img)
    assert out.size == (30, 20) and out.mode == ("RGBA" if mode == "LA" else "RGB")


def test_alpha_is_put_back(stylizer: Stylizer, tmp_path: Path) -> None:
    img = Image.open(make_image(tmp_path / "a.png", (30, 20))).convert("RGBA")
    alpha = Image.linear_gradient("L").resize((30, 20))
    img.putalpha(alpha)
    out = stylizer.stylize(img)
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], np.asarray(alpha))


def test_sixteen_bit_png_uses_its_full_range(stylizer: Stylizer, tmp_path: Path) -> None:
    arr = (np.linspace(0, 65535, 32 * 24).reshape(24, 32)).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    x = load_rgb(tmp_path / "deep.png")
    assert x.min() == 0 and abs(float(x.max()) - 1) < 1e-6
    assert stylizer.stylize(Image.open(tmp_path / "deep.png")).size == (32, 24)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.open(make_image(tmp_path / "a.png", (40, 20))).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    img.save(tmp_path / "rot.jpg", exif=exif)
    assert load_rgb(tmp_path / "rot.jpg").shape[-2:] == (40, 20)


def test_bad_options_are_refused() -> None:
    with pytest.raises(FastNSTError, match="strength"):
        StylizeOptions(strength=1.5)
    with pytest.raises(FastNSTError, match="tile"):
        StylizeOptions(tile=16)


def test_cancel_stops_a_tiled_image_at_the_next_tile(stylizer: Stylizer) -> None:
    """What the web app uses to stop work for a client that went away."""
    calls = []

    class Gone(Exception):
        pass

    def cancel() -> None:
        calls.append(1)
        if len(calls) > 3:
            raise Gone

    x = torch.rand(1, 3, 96, 128)
    with pytest.raises(Gone):
        stylizer.stylize_tensor(x, StylizeOptions(tile=32, overlap=8), cancel=cancel)
    assert len(calls) == 4  # once before the work, then before each tile until it said stop
    calls.clear()
    whole = stylizer.stylize_tensor(x, StylizeOptions(tile=32, overlap=8), cancel=lambda: calls.append(1))
    assert len(calls) > 10 and whole.shape == x.shape  # every tile checked when nobody stops it
