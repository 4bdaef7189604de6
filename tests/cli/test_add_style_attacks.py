"""Round 4 of hostile use of the painting fitter and its cache (issue 32): each case is one line with a
documented exit code, nothing a user owns is lost, and no fit is wasted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from fastnst.cli.main import main
from fastnst.core.modelfile import load_network, read_metadata

from conftest import make_image
from samples import FAST_FIT as FAST
from samples import add_style, tiny_model


@pytest.fixture
def painting(tmp_path: Path) -> Path:
    return make_image(tmp_path / "sunset.png", (96, 72), seed=5)

pytestmark = pytest.mark.usefixtures("fit_cache")


def one_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note:")]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def entries(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "fitted").glob("*.safetensors"))


def test_a_planted_or_damaged_cache_entry_is_fitted_again(tmp_path: Path, base: Path, photos: Path,
                                                          painting: Path, capsys) -> None:
    args = [painting, "--to", base, "--steps", 2, "--photos", photos, *FAST, "--overwrite"]
    assert add_style(*args) == 0
    (entry,) = entries(tmp_path)
    good = entry.read_bytes()
    plants = {
        "a single-style starter": tiny_model(tmp_path / "single.safetensors").read_bytes(),
        "the base itself": base.read_bytes(),
        "flipped bytes": good[:-2000] + bytes(b ^ 0xFF for b in good[-2000:-1000]) + good[-1000:],
        "a truncated file": good[: len(good) // 2],
    }
    for what, data in plants.items():
        entry.write_bytes(data)
        assert add_style(*args) == 0, what
        assert "is damaged" in capsys.readouterr().err, what
        _, meta = load_network(entry)  # a good entry again: loads, finite, the base grown by one style
        assert meta.styles == ["ink", "fire", "sunset"], what
        assert load_network(tmp_path / "sunset.safetensors")[1].styles[-1] == "sunset"


@pytest.mark.parametrize("state", ["a file", "read-only", "an entry that is a folder", "a lock that is a folder"])
def test_an_unusable_cache_costs_the_reuse_never_the_fit(tmp_path: Path, base: Path, photos: Path, painting: Path,
                                                         state: str, capsys, monkeypatch) -> None:
    cache = tmp_path / "cache"
    if state == "a file":
        cache.write_text("not a folder")
    elif state == "read-only":
        (cache / "fitted").mkdir(parents=True)
        (cache / "fitted").chmod(0o500)
        if os.access(cache / "fitted", os.W_OK):
            pytest.skip("root writes to read-only folders")
    else:
        probe = ["-o", "probe.safetensors"]
        assert add_style(painting, "--to", base, "--steps", 2, "--photos", photos, *FAST, *probe) == 0
        (entry,) = entries(tmp_path)
        blocked = entry if state == "an entry that is a folder" else entry.parent / "fits.lock"
        blocked.unlink()
        entry.unlink(missing_ok=True)
        entry.with_suffix(".sha256").unlink(missing_ok=True)
        blocked.mkdir()
        capsys.readouterr()
    assert add_style(painting, "--to", base, "--steps", 2, "--photos", photos, *FAST) == 0
    err = capsys.readouterr().err
    assert "cannot be used" in err or "is damaged" in err
    assert read_metadata(tmp_path / "sunset.safetensors").styles[-1] == "sunset"  # the fit reached -o
    photo = make_image(tmp_path / "photo.png", (40, 30))
    assert main(["stylize", str(photo), "--style-image", str(painting), "--model", str(base), "--fit-steps", "2",
                 "--fit-photos", str(photos), *FAST]) == 0  # and stylize used it
    assert (tmp_path / "photo_sunset.png").is_file()
    (cache / "fitted").chmod(0o700) if (cache / "fitted").is_dir() else None


def test_loss_metadata_of_the_wrong_type_is_one_line(tmp_path: Path, base: Path, painting: Path, capsys) -> None:
    with safe_open(str(base), "pt") as f:
        header, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    for bad in ({"style_layers": "relu1_2"}, {"style_layers": {"relu1_2": "x"}}, {"style_weight": [1]}):
        loss = {**json.loads(header["loss"]), **bad}
        save_file(state, str(tmp_path / "odd.safetensors"), {**header, "loss": json.dumps(loss)})
        assert add_style(painting, "--to", "odd.safetensors", *FAST) == 2
        assert "model metadata loss" in one_error(capsys)


@pytest.mark.parametrize(("extra", "message"), [
    (["--to", "."], "is a folder, not a model file"),
    (["-o", "nodir/x.safetensors"], "nodir is not a folder; create it first (--output)"),
    (["-o", "dir.safetensors", "--overwrite"], "dir.safetensors is a folder"),
    (["--name", "𝔸" * 64], "is too long for a file system"),
    (["--steps", "100000000"], "steps is out of range"),
    (["-o", "sunset.png", "--overwrite"], "a model file's name ends in .safetensors"),
])
def test_bad_options_are_refused_before_any_fitting(tmp_path: Path, base: Path, painting: Path, extra: list,
                                                    message: str, capsys, monkeypatch) -> None:
    from fastnst.inference import fitting

    monkeypatch.setattr(fitting, "fit_style", lambda *a, **k: pytest.fail("fitted before checking"))
    (tmp_path / "dir.safetensors").mkdir()
    args = [painting, *(["--to", base] if "--to" not in extra else []), *extra, *FAST]
    assert add_style(*args) == 2
    assert message in one_error(capsys)


def test_the_output_is_never_the_input(tmp_path: Path, base: Path, capsys) -> None:
    # A painting that happens to be named .safetensors, or the base itself, as -o with --overwrite.
    odd = make_image(tmp_path / "paint.png", (96, 72))
    odd.rename(tmp_path / "paint.safetensors")
    before = (tmp_path / "paint.safetensors").read_bytes()
    assert add_style("paint.safetensors", "--to", base, "-o", "paint.safetensors", "--overwrite", *FAST) == 2
    assert "is this command's input" in one_error(capsys)
    assert (tmp_path / "paint.safetensors").read_bytes() == before
    base_bytes = base.read_bytes()
    assert add_style(make_image(tmp_path / "q.png", (96, 72)), "--to", base, "-o", base, "--overwrite", *FAST) == 2
    assert base.read_bytes() == base_bytes


def test_stylize_checks_its_outputs_and_style_before_fitting(tmp_path: Path, base: Path, painting: Path, capsys,
                                                             monkeypatch) -> None:
    from fastnst.inference import fitting

    monkeypatch.setattr(fitting, "fit_style", lambda *a, **k: pytest.fail("fitted before checking"))
    photo = make_image(tmp_path / "photo.png", (40, 30))
    (tmp_path / "taken.png").write_bytes(b"mine")
    common = ["stylize", str(photo), "--style-image", str(painting), "--model", str(base), *FAST]
    assert main([*common, "-o", "taken.png"]) == 2
    assert "exists" in one_error(capsys) and (tmp_path / "taken.png").read_bytes() == b"mine"
    assert main([*common, "--style", "ink"]) == 2
    assert "--style does not go with it" in one_error(capsys)
    assert main([*common, "--fit-steps", "0"]) == 2
    assert one_error(capsys).endswith("(--fit-steps)")


def test_a_huge_painting_is_refused_without_naming_a_flag_add_style_lacks(tmp_path: Path, base: Path,
                                                                          capsys) -> None:
    from PIL import Image

    Image.new("1", (12000, 11000)).save(tmp_path / "huge.png")
    assert add_style("huge.png", "--to", base, *FAST) == 2
    message = one_error(capsys)
    assert "over the limit" in message and "--max-pixels" not in message and "scale it down" in message


def test_a_diverged_fit_names_the_commands_own_flag(tmp_path: Path, base: Path, photos: Path, painting: Path,
                                                    capsys, monkeypatch) -> None:
    from fastnst.core.errors import FastNSTError
    from fastnst.inference import fitting

    def diverge(*a, **k):
        raise FastNSTError("the fit diverged at step 3 (loss nan); lower the learning rate", param="lr")

    monkeypatch.setattr(fitting, "fit_style", diverge)
    photo = make_image(tmp_path / "photo.png", (40, 30))
    assert main(["stylize", str(photo), "--style-image", str(painting), "--model", str(base), *FAST]) == 2
    assert one_error(capsys).endswith("(--fit-lr)")
    assert torch.isfinite(torch.ones(1)).all()  # (the fitter itself was never run)
