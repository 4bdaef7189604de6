"""Any painting as a style: fitting a new (γ, β) on a trained multi-style network, cached. Tiny networks,
32 px crops and a seeded random VGG: what is checked is the mechanics, not the looks (docs/quality.md)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastnst.core.errors import FastNSTError
from fastnst.core.modelfile import load_network, read_metadata
from fastnst.core.transformer import StyleInstanceNorm
from fastnst.inference.fitting import FitCancelled, FitOptions, cached_style, fit_style, read_painting, style_name
from fastnst.inference.stylizer import StylizeOptions, Stylizer

from conftest import make_image
from samples import tiny_base

FAST = FitOptions(steps=3, image_size=32, batch_size=2, style_size=64, vgg_weights="random", device="cpu")


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    for i in range(3):
        make_image(tmp_path / "photos" / f"p{i}.png", (64, 48), seed=i)
    return tmp_path / "photos"


@pytest.fixture
def painting(tmp_path: Path) -> Path:
    return make_image(tmp_path / "My Painting (1).png", (96, 80), seed=7)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FASTNST_CACHE", str(tmp_path / "cache"))


def test_only_the_new_style_moves_and_its_loss_falls(tmp_path: Path, painting: Path, photos: Path) -> None:
    base = tiny_base(tmp_path / "base.safetensors")
    before, _ = load_network(base)
    losses: list[float] = []
    options = FitOptions(steps=40, image_size=32, batch_size=2, style_size=64, vgg_weights="random", photos=photos)
    net, meta = fit_style(painting, base, options, on_progress=lambda p, _: losses.append(p.loss))
    assert meta.styles == ["ink", "fire", "My_Painting_1"] and meta.network["num_styles"] == 3
    assert len(losses) == 40 and sum(losses[-5:]) < sum(losses[:5])
    grown = dict(net.state_dict())
    for key, old in before.state_dict().items():
        if old.dim() == 2 and old.shape[0] == 2:  # a norm's (γ or β) rows: the old styles' kept exactly
            assert torch.equal(grown[key][:2], old)
        else:
            assert torch.equal(grown[key], old), key
    new_rows = [m.weight[2] for m in net.modules() if isinstance(m, StyleInstanceNorm)]
    mean_rows = [m.weight[:2].mean(0) for m in net.modules() if isinstance(m, StyleInstanceNorm)]
    assert any(not torch.allclose(a, b) for a, b in zip(new_rows, mean_rows, strict=True))


def test_the_fitted_model_paints_its_style_and_blends(tmp_path: Path, painting: Path, photos: Path) -> None:
    path, cached = cached_style(painting, tiny_base(tmp_path / "b.safetensors"), FitOptions(**{**FAST.__dict__,
                                                                                            "photos": photos}))
    assert not cached and path.parent == tmp_path / "cache" / "fitted"
    stylizer = Stylizer.from_file(path, device="cpu", precision="fp32", engine="torch")
    photo = Image.open(make_image(tmp_path / "x.png", (40, 32), seed=1))
    new = stylizer.stylize(photo, StylizeOptions(style="My_Painting_1"))
    old = stylizer.stylize(photo, StylizeOptions(style="ink"))
    blend = stylizer.stylize(photo, StylizeOptions(style="ink:0.5,My_Painting_1:0.5"))
    assert new.size == (40, 32) and new.tobytes() != old.tobytes() != blend.tobytes()
    assert read_metadata(path).style_images[-1] == painting.name  # the name, not the user's folders


def test_the_second_request_is_cached_and_two_at_once_fit_once(tmp_path: Path, painting: Path,
                                                               photos: Path) -> None:
    base = tiny_base(tmp_path / "b.safetensors")
    options = FitOptions(**{**FAST.__dict__, "photos": photos})
    fits: list[int] = []
    results: list[tuple[Path, bool]] = []

    def ask() -> None:
        results.append(cached_style(painting, base, options, on_progress=lambda p, _: fits.append(p.step)))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(c for _, c in results) == [False, True] and fits == [1, 2, 3]
    assert len({p for p, _ in results}) == 1
    # One entry, its checksum and the folder's one lock (no lock file per painting ever tried).
    assert sorted(p.suffix for p in (tmp_path / "cache" / "fitted").iterdir()) == [".lock", ".safetensors", ".sha256"]
    again = cached_style(painting, base, options, on_progress=lambda p, _: fits.append(p.step))
    assert again == (results[0][0], True) and len(fits) == 3
    other = cached_style(painting, base, FitOptions(**{**options.__dict__, "steps": 2}))
    assert other[0] != again[0]  # another recipe, another entry


def test_a_cancelled_fit_writes_nothing(tmp_path: Path, painting: Path, photos: Path) -> None:
    steps: list[int] = []
    with pytest.raises(FitCancelled):
        cached_style(painting, tiny_base(tmp_path / "b.safetensors"), FitOptions(**{**FAST.__dict__, "photos": photos}),
                     on_progress=lambda p, _: steps.append(p.step), cancel=lambda: len(steps) >= 2)
    assert steps == [1, 2]
    assert not list((tmp_path / "cache" / "fitted").glob("*.safetensors"))


def test_a_single_style_base_is_grown_to_two(tmp_path: Path, painting: Path, photos: Path) -> None:
    net, meta = fit_style(painting, tiny_base(tmp_path / "one.safetensors", ("ink",)),
                          FitOptions(**{**FAST.__dict__, "photos": photos}))
    assert meta.styles == ["ink", "My_Painting_1"] and net.num_styles == 2


def test_greyscale_and_transparent_paintings_are_fitted_with_a_note(tmp_path: Path) -> None:
    grey = make_image(tmp_path / "grey.png", (80, 80), mode="L")
    image, notes = read_painting(grey)
    assert image.shape == (1, 3, 512, 512) and notes == ["grey.png is greyscale: the style will be grey"]
    rgba = Image.open(make_image(tmp_path / "a.png", (80, 80))).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(tmp_path / "alpha.png")
    image, notes = read_painting(tmp_path / "alpha.png")
    assert image.shape[1] == 3 and notes == ["alpha.png has transparency: fitted on a white background"]


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_deep_greyscale_paintings_keep_their_tones(tmp_path: Path, mode: str) -> None:
    # 16-bit and float greyscale were clipped to white by convert("RGB"); the stylize path's reader keeps them.
    ramp = np.tile(np.linspace(0, 1, 96, dtype=np.float32), (80, 1))
    scale = {"I;16": 65535, "I": 65535, "F": 1.0}[mode]
    values = (ramp * scale).astype({"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode])
    path = tmp_path / ("p.png" if mode == "I;16" else "p.tif")
    Image.fromarray(values).save(path)
    image, notes = read_painting(path)
    assert 0.3 < float(image.mean()) < 0.7 and float(image.std()) > 0.2  # a ramp, not solid white
    assert "greyscale" in notes[0]


@pytest.mark.parametrize("size", [(64, 20000), (20000, 64), (64, 3000)])
def test_an_elongated_painting_is_one_line_not_a_crash(tmp_path: Path, size: tuple[int, int]) -> None:
    Image.new("RGB", size, (200, 100, 50)).save(tmp_path / "thin.png")
    with pytest.raises(FastNSTError, match="too elongated to be a style") as err:
        read_painting(tmp_path / "thin.png")
    assert "\n" not in str(err.value)


def test_a_big_painting_is_reduced_before_it_becomes_floats(tmp_path: Path) -> None:
    import tracemalloc

    Image.new("RGB", (6000, 4000), (10, 120, 200)).save(tmp_path / "big.png")
    tracemalloc.start()
    image, _ = read_painting(tmp_path / "big.png")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert image.shape == (1, 3, 341, 512)
    assert peak < 6000 * 4000 * 3 * 4 / 4  # far under the full-size float copy (288 MB)


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt", "notes.txt is not an image Pillow can read"),
    (lambda d: make_image(d / "tiny.png", (40, 120)), "tiny.png is 40x120: a painting needs at least 64 px"),
    (lambda d: Image.new("1", (12000, 11000)).save(d / "huge.png") or d / "huge.png", "over the limit of 120 Mpx"),
    (lambda d: d / "missing.jpg", "missing.jpg: no such painting file"),
])
def test_what_cannot_be_a_style_is_one_message(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(FastNSTError) as err:
        read_painting(make(tmp_path))
    assert message in str(err.value)


def test_a_file_that_is_not_a_model_cannot_be_a_base(tmp_path: Path, painting: Path) -> None:
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(b"\x00" * 64)
    with pytest.raises(FastNSTError):
        fit_style(painting, bogus, FAST)


def test_style_names_come_from_file_names() -> None:
    assert style_name(Path("My Painting (1).jpg")) == "My_Painting_1"
    assert style_name(Path("....jpg")) == "painting"
    assert style_name(Path("Mona-Lisa+x.png")) == "Mona-Lisa+x"


@pytest.mark.parametrize("native", [True, False])
def test_both_precision_paths_fit_on_every_machine(tmp_path: Path, painting: Path, photos: Path, native: bool,
                                                   monkeypatch) -> None:
    # A fit runs in bf16 where the CPU has it natively and fp32 elsewhere: both are run here, whatever this CPU is.

    from fastnst.core import device as device_module

    monkeypatch.setattr(device_module, "native_bf16_cpu", lambda: native)
    casts = []
    real = torch.autocast
    monkeypatch.setattr(torch, "autocast", lambda *a, **k: casts.append(k.get("dtype")) or real(*a, **k))
    net, _ = fit_style(painting, tiny_base(tmp_path / "b.safetensors"), FitOptions(**{**FAST.__dict__,
                                                                                       "photos": photos}))
    assert (torch.bfloat16 in casts) == native
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_a_fit_can_start_near_the_known_style_its_painting_resembles(tmp_path: Path) -> None:
    # The new style's first (γ, β) mixes the known styles' rows by how close their paintings' signatures are;
    # the base's file keeps those signatures, so the paintings need not be on this machine.
    from fastnst.core.modelfile import ModelMeta, load_network, read_signatures, save_stylizer
    from fastnst.inference import fitting

    red, blue = np.zeros((80, 80, 3), np.uint8), np.zeros((80, 80, 3), np.uint8)
    red[..., 0], blue[..., 2] = 220, 220
    red[::4] = blue[::4] = 40  # some texture
    Image.fromarray(red).save(tmp_path / "red.png")
    Image.fromarray(blue).save(tmp_path / "blue.png")
    base = tiny_base(tmp_path / "b.safetensors")
    net, meta = load_network(base)
    meta = ModelMeta(**{**meta.to_dict(), "style_images": [str(tmp_path / "red.png"), str(tmp_path / "blue.png")]})
    save_stylizer(net, base, meta)
    reddish = red.copy()
    reddish[..., 1] = 30
    Image.fromarray(reddish).save(tmp_path / "reddish.png")
    image, _ = read_painting(tmp_path / "reddish.png", 64)
    grown = net.with_new_style()
    loss = fitting._loss(meta, "random").eval()
    loss.set_style(image)
    weights = fitting._start_near(grown, loss, image, base, meta, 64)
    assert weights[0] > 0.8 > weights[1]
    norm = grown.norm_layers()[0]
    torch.testing.assert_close(norm.weight[2], weights[0] * norm.weight[0] + weights[1] * norm.weight[1])

    # Another machine: the paintings are gone. Without signatures the mean start stands; with them (as a
    # packed base keeps them) the fit starts near the red one as before.
    lost = ModelMeta(**{**meta.to_dict(), "style_images": ["/nowhere/a.png", "https://example.com/b.jpg"]})
    save_stylizer(net, base, lost)
    assert read_signatures(base) is None
    assert fitting._start_near(net.with_new_style(), loss, image, base, lost, 64) == []
    rows, known = fitting.known_signatures(meta, loss, 64)
    assert rows == [0, 1]
    save_stylizer(net, base, lost, signatures=known)
    assert load_network(base)[0].state_dict().keys() == net.state_dict().keys()  # the network is unchanged
    torch.testing.assert_close(read_signatures(base), known, atol=1e-2, rtol=1e-2)  # kept in fp16
    again = fitting._start_near(net.with_new_style(), loss, image, base, lost, 64)
    assert again == pytest.approx(weights, abs=0.02)


def test_a_cosine_schedule_settles_the_last_steps(tmp_path: Path, painting: Path, photos: Path) -> None:
    """With ``schedule="cosine"`` the rate falls to a tenth: the style's last moves are a fraction of what
    the same fit at a constant rate makes; an unknown schedule is refused, and the cache keeps the two apart."""
    base = tiny_base(tmp_path / "base.safetensors")

    def last_move(schedule: str) -> float:
        rows: list[torch.Tensor] = []

        def keep(_, painter) -> None:
            rows.append(torch.cat([m.weight[-1].detach().clone() for m in painter.network.modules()
                                   if isinstance(m, StyleInstanceNorm)]))

        fit_style(painting, base, FitOptions(**{**FAST.__dict__, "steps": 10, "photos": photos,
                                                "schedule": schedule}), on_progress=keep)
        return float((rows[-1] - rows[-2]).norm())

    assert last_move("cosine") < 0.4 * last_move("constant")
    with pytest.raises(FastNSTError, match="schedule"):
        FitOptions(schedule="linear")
    assert FitOptions(schedule="cosine").recipe() != FitOptions().recipe()
    assert "schedule" not in FitOptions().recipe()  # entries cached before the option keep their keys
