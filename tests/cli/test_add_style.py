"""`fastnst add-style` and `fastnst stylize --style-image`: any painting as a style from the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastnst.cli.main import main
from fastnst.core.modelfile import read_metadata

from conftest import make_image
from samples import FAST_FIT as FAST
from samples import add_style


def test_add_style_writes_a_model_that_stylizes_by_its_new_style(tmp_path: Path, base: Path, photos: Path,
                                                                  capsys) -> None:
    painting = make_image(tmp_path / "sunset.jpg", (96, 72), seed=5)
    assert add_style(painting, "--to", base, "--steps", 2, "--photos", photos, *FAST) == 0
    out = capsys.readouterr().out
    assert out.startswith("sunset.safetensors  (style 'sunset':")
    assert read_metadata(tmp_path / "sunset.safetensors").styles == ["ink", "fire", "sunset"]
    photo = make_image(tmp_path / "photo.png", (40, 30))
    assert main(["stylize", str(photo), "--model", "sunset.safetensors", "--style", "sunset:0.5,ink:0.5",
                 "--device", "cpu"]) == 0
    assert Image.open(tmp_path / "photo_ink50+sunset50.png").size == (40, 30)
    # no --style: the file paints the painting it was made for, not the base's first style
    assert main(["stylize", str(photo), "--model", "sunset.safetensors", "--device", "cpu"]) == 0
    assert main(["stylize", str(photo), "--model", "sunset.safetensors", "--style", "ink", "--device", "cpu"]) == 0
    assert main(["stylize", str(photo), "--model", "sunset.safetensors", "--style", "sunset", "--device", "cpu",
                 "-o", "chosen.png"]) == 0
    default = np.asarray(Image.open(tmp_path / "photo_sunset.png"), dtype=np.int16)
    assert np.array_equal(default, np.asarray(Image.open(tmp_path / "chosen.png"), dtype=np.int16))
    assert np.abs(default - np.asarray(Image.open(tmp_path / "photo_ink.png"), dtype=np.int16)).mean() > 1
    # the same painting again: from the cache, no second fit; an existing output is refused
    assert add_style(painting, "--to", base, "--steps", 2, "--photos", photos, *FAST, "-o", "again.safetensors") == 0
    assert "fitted" not in capsys.readouterr().err
    assert add_style(painting, "--to", base, "--steps", 2, "--photos", photos, *FAST) == 2
    assert "sunset.safetensors exists; not overwriting it (--overwrite replaces it)" in capsys.readouterr().err

pytestmark = pytest.mark.usefixtures("fit_cache")


def test_stylize_with_a_style_image_fits_once_then_reuses(tmp_path: Path, base: Path, photos: Path, capsys) -> None:
    painting = make_image(tmp_path / "storm.png", (80, 80), seed=9)
    photo = make_image(tmp_path / "photo.png", (40, 30))
    args = ["stylize", str(photo), "--style-image", str(painting), "--model", str(base), "--fit-steps", "2",
            "--fit-photos", str(photos), "--vgg-weights", "random", "--device", "cpu"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "note: fitted storm.png in" in err
    assert Image.open(tmp_path / "photo_storm.png").size == (40, 30)
    assert main([*args, "--overwrite"]) == 0
    assert "fitted" not in capsys.readouterr().err


@pytest.mark.parametrize(("painting", "message"), [
    ("notes.txt", "error: notes.txt is not an image Pillow can read"),
    ("tiny.png", "error: tiny.png is 40x40: a painting needs at least 64 px on each side to show its brushwork"),
    ("missing.jpg", "error: missing.jpg: no such painting file"),  # add-style's painting is positional: no flag
])
def test_bad_paintings_are_one_line_and_exit_2(tmp_path: Path, base: Path, painting: str, message: str,
                                               capsys) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    make_image(tmp_path / "tiny.png", (40, 40))
    assert add_style(painting, "--to", base, *FAST) == 2
    assert capsys.readouterr().err.strip().splitlines() == [message]


def test_a_base_that_is_not_a_model_is_refused(tmp_path: Path, capsys) -> None:
    (tmp_path / "bogus.safetensors").write_bytes(b"\x00" * 64)
    assert add_style(make_image(tmp_path / "p.png", (80, 80)), "--to", "bogus.safetensors", *FAST) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_ctrl_c_during_a_fit_writes_nothing_and_exits_130(tmp_path: Path, base: Path, photos: Path, monkeypatch,
                                                          capsys) -> None:
    from fastnst.inference import fitting

    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real = fitting.random_crops
    monkeypatch.setattr(fitting, "random_crops", interrupted)
    assert add_style(make_image(tmp_path / "p.png", (80, 80)), "--to", base, "--steps", 5, "--photos", photos,
                     *FAST) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "interrupted"
    assert not (tmp_path / "p.safetensors").exists()
    assert not list((tmp_path / "cache" / "fitted").glob("*.safetensors"))


def test_stylize_needs_a_model_or_a_painting(tmp_path: Path, capsys) -> None:
    assert main(["stylize", str(make_image(tmp_path / "x.png"))]) == 2
    assert "name a model (--model NAME or FILE" in capsys.readouterr().err


def test_a_missing_input_fails_before_any_fitting(tmp_path: Path, base: Path, capsys) -> None:
    painting = make_image(tmp_path / "p.png", (80, 80))
    assert main(["stylize", "nope.jpg", "--style-image", str(painting), "--model", str(base), *FAST[:2]]) == 2
    assert "nope.jpg: no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "cache" / "fitted").exists()


def test_content_weight_keeps_more_of_the_photo_and_is_recorded(tmp_path: Path, base: Path, photos: Path) -> None:
    painting = make_image(tmp_path / "calm.png", (80, 80), seed=2)
    assert add_style(painting, "--to", base, "--steps", 1, "--photos", photos, "--content-weight", 3, *FAST) == 0
    assert read_metadata(tmp_path / "calm.safetensors").loss["content_weight"] == 3
    assert add_style(painting, "--to", base, "--content-weight", -1, *FAST, "-o", "x.safetensors") == 2
    assert add_style(painting, "--to", base, "--name", "../evil", *FAST) == 2
