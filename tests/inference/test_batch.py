"""Inputs to outputs without the command line: what `fastnst stylize` and the app share."""

from pathlib import Path

import pytest

from fastnst.core.errors import FastNSTError
from fastnst.inference.batch import STDIO, plan, unique_name

from conftest import make_image


def test_outputs_go_beside_inputs_and_never_collide(tmp_path: Path) -> None:
    a = make_image(tmp_path / "a" / "x.png")
    b = make_image(tmp_path / "b" / "x.png")
    out = tmp_path / "out"
    planned = plan([str(a), str(b)], out, recursive=False, style="ink")
    assert [j.target for j in planned.jobs] == [out / "x_ink.png", out / "x_ink_2.png"]
    assert planned.failures == [] and planned.skipped == []
    beside = plan([str(a)], None, recursive=False, style="ink")
    assert [j.target for j in beside.jobs] == [a.with_name("x_ink.png")]


def test_a_folder_skips_its_earlier_outputs_and_says_so(tmp_path: Path) -> None:
    make_image(tmp_path / "p.png")
    make_image(tmp_path / "p_ink.png")  # what an earlier run wrote
    planned = plan([str(tmp_path)], tmp_path / "out", recursive=False, style="ink")
    assert [j.source.name for j in planned.jobs] == ["p.png"]
    assert planned.notes == [f"{tmp_path}: skipped 1 earlier output(s) (*_ink.*)"]


def test_bad_inputs_are_collected_and_bad_outputs_raise(tmp_path: Path) -> None:
    photo = make_image(tmp_path / "p.png")
    planned = plan([str(tmp_path / "missing.jpg"), str(photo)], tmp_path / "o", recursive=False, style="s")
    assert [str(e) for e in planned.failures] == [f"{tmp_path / 'missing.jpg'}: no such file or folder"]
    assert len(planned.jobs) == 1
    with pytest.raises(FastNSTError, match="writes one image to stdout") as err:
        plan([str(photo), str(photo)], STDIO, recursive=False, style="s")
    assert err.value.param == "output"


def test_unique_name_counts_up_until_free() -> None:
    taken = {"x", "x_2"}
    assert unique_name("x", taken.__contains__) == "x_3"
    assert unique_name("x", taken.__contains__, ".jpg") == "x.jpg"
    assert unique_name("y", taken.__contains__) == "y"
