"""`fastnst stylize --shard K/N`: N processes split a folder with no overlap and no gaps, and a re-run
resumes a killed one."""

import os
from pathlib import Path

import pytest

from fastnst.cli.main import main
from fastnst.core.errors import FastNSTError
from fastnst.inference.shard import Shard, local_rank, parse_shard

from conftest import make_image
from samples import tiny_model


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return tiny_model(tmp_path / "m.safetensors", seed=0)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for i in range(14):
        make_image(root / ("sub" if i % 3 == 0 else "") / f"p{i:02d}.png", (32, 24), seed=i)
    return root


def stylize_shard(model: Path, folder: Path, out: Path, shard: str, capsys, *extra: str) -> tuple[int, set[Path], str]:
    code = main(["stylize", str(folder), "-r", "-m", str(model), "-o", str(out), f"--shard={shard}", *extra])
    captured = capsys.readouterr()
    return code, {Path(line) for line in captured.out.splitlines()}, captured.err


def test_three_shards_write_each_output_exactly_once(model: Path, folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    written = []
    for k in range(3):
        code, paths, err = stylize_shard(model, folder, out, f"{k}/3", capsys)
        assert code == 0 and f"shard {k}/3: {len(paths)} done, 0 skipped" in err
        written.append(paths)
    assert sum(len(w) for w in written) == 14  # no overlap ...
    assert set().union(*written) == set(out.rglob("*.png"))  # ... and no gaps
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.png")} == \
        {p.relative_to(folder).with_name(f"{p.stem}_toy.png").as_posix() for p in folder.rglob("*.png")}
    assert all(0 < len(w) < 14 for w in written)  # the work is actually shared


def test_a_rerun_redoes_only_the_missing_outputs(model: Path, folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    for k in range(3):
        stylize_shard(model, folder, out, f"{k}/3", capsys)
    outputs = sorted(out.rglob("*.png"))
    deleted = set(outputs[::4])
    for p in deleted:
        p.unlink()
    kept = {p: p.stat().st_mtime_ns for p in outputs if p not in deleted}
    # A partial file that a killed process left behind goes too.
    victim = next(iter(deleted))
    partial = victim.with_name(f".{victim.stem}.abc123.part{victim.suffix}")
    partial.write_bytes(b"half a png")
    redone, skipped = set(), 0
    for k in range(3):
        code, paths, err = stylize_shard(model, folder, out, f"{k}/3", capsys)
        assert code == 0
        redone |= paths
        skipped += int(err.split(" done, ")[1].split(" skipped")[0])
    assert redone == deleted and skipped == 14 - len(deleted)
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    assert not partial.exists()


def test_auto_takes_rank_and_world_size_from_the_launcher() -> None:
    assert parse_shard("auto", {"RANK": "2", "WORLD_SIZE": "4"}) == Shard(2, 4)
    assert parse_shard("auto", {"SLURM_PROCID": "1", "SLURM_NTASKS": "3"}) == Shard(1, 3)
    with pytest.raises(FastNSTError, match="needs RANK and WORLD_SIZE"):
        parse_shard("auto", {})


def test_auto_on_the_command_line(model: Path, folder: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, paths, err = stylize_shard(model, folder, tmp_path / "out", "auto", capsys)
    assert code == 0 and "shard 1/2:" in err
    assert paths == {p for p in paths if Shard(1, 2).owns(p.relative_to(tmp_path / "out").as_posix()
                                                         .replace("_toy.png", ".png"))}


def test_each_process_of_a_launcher_knows_its_gpu() -> None:
    assert local_rank({"LOCAL_RANK": "3"}) == 3
    assert local_rank({"SLURM_LOCALID": "1"}) == 1
    assert local_rank({}) is None


def test_every_key_belongs_to_exactly_one_shard() -> None:
    keys = [f"dir{i % 7}/photo {i}.jpg" for i in range(3000)]
    for n in (1, 2, 5):
        owners = [[k for k in range(n) if Shard(k, n).owns(key)] for key in keys]
        assert all(len(o) == 1 for o in owners)
        counts = [sum(o == [k] for o in owners) for k in range(n)]
        assert min(counts) > 0.8 * len(keys) / n  # roughly even


@pytest.mark.parametrize("bad", ["3/3", "-1/2", "1", "a/b", "1/0", "0/", "", " "])
def test_bad_shards_are_one_line_before_any_work(model: Path, folder: Path, tmp_path: Path, capsys,
                                                 bad: str) -> None:
    code, _, err = stylize_shard(model, folder, tmp_path / "out", bad, capsys)
    assert code == 2 and err.count("\n") == 1 and "K/N" in err and "(--shard)" in err
    assert not (tmp_path / "out").exists()


def test_a_dashed_shard_given_apart_gets_the_same_message(model: Path, folder: Path, tmp_path: Path,
                                                          capsys) -> None:
    code = main(["stylize", str(folder), "-m", str(model), "-o", str(tmp_path / "out"), "--shard", "-1/2"])
    err = capsys.readouterr().err
    assert code == 2 and "K/N" in err and "'-1/2'" in err and not (tmp_path / "out").exists()


def test_an_empty_shard_is_an_error_not_all_of_the_work(model: Path, folder: Path, tmp_path: Path, capsys) -> None:
    code, written, err = stylize_shard(model, folder, tmp_path / "out", "", capsys)
    assert code == 2 and "empty" in err and not written and not (tmp_path / "out").exists()


def test_skip_existing_without_shards(model: Path, folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["stylize", str(folder), "-r", "-m", str(model), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["stylize", str(folder), "-r", "-m", str(model), "-o", str(out)]) == 1  # refuses to overwrite
    assert "--skip-existing skips them" in capsys.readouterr().err
    first = sorted(out.rglob("*.png"))[0]
    os.remove(first)
    assert main(["stylize", str(folder), "-r", "-m", str(model), "-o", str(out), "--skip-existing"]) == 0
    captured = capsys.readouterr()
    assert captured.out.split() == [str(first)] and "1 done, 13 skipped" in captured.err
