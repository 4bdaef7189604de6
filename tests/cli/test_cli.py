"""The `fastnst` command end to end (in process through cli.main, plus one real subprocess)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastnst.cli.main import main
from fastnst.core.modelfile import ModelMeta, save_stylizer
from fastnst.core.transformer import TransformerNet

from conftest import make_image
from samples import tiny_model


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return tiny_model(tmp_path / "toy.safetensors")


def run(*args: object) -> int:
    return main(["stylize", *map(str, args)])


def no_partials(folder: Path) -> bool:
    return not any(".part" in p.name for p in folder.rglob("*"))


@pytest.mark.parametrize("ext", ["jpg", "png", "webp", "bmp", "tiff"])
def test_each_format_writes_stem_style_ext_next_to_the_input(model: Path, tmp_path: Path, ext: str) -> None:
    src = make_image(tmp_path / f"photo.{ext}", (40, 30))
    assert run(src, "--model", model, "--device", "cpu") == 0
    out = Image.open(tmp_path / f"photo_toy.{ext}")
    assert out.size == (40, 30)


def test_output_file_for_one_input(model: Path, tmp_path: Path, capsys) -> None:
    src = make_image(tmp_path / "a.png")
    assert run(src, "--model", model, "-o", tmp_path / "out.jpg") == 0
    assert Image.open(tmp_path / "out.jpg").format == "JPEG"
    assert capsys.readouterr().out.strip() == str(tmp_path / "out.jpg")


def test_folder_recursive_mirrors_into_the_output_folder(model: Path, image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "styled"
    assert run(image_folder, "-r", "--model", model, "-o", out, "--max-size", "32", "--batch-size", "3") == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*"))
    assert written == sorted(p.relative_to(image_folder).with_name(f"{p.stem}_toy{p.suffix}").as_posix()
                             for p in image_folder.rglob("*.*"))
    assert all(max(Image.open(p).size) == 32 for p in out.rglob("*.*"))


def test_folder_without_recursion_says_how(model: Path, tmp_path: Path, capsys) -> None:
    make_image(tmp_path / "f" / "sub" / "a.png")
    assert run(tmp_path / "f", "--model", model) == 1
    assert "add -r" in capsys.readouterr().err


def test_glob_pattern(model: Path, tmp_path: Path) -> None:
    for i in range(2):
        make_image(tmp_path / f"g{i}.png", seed=i)
    assert run(str(tmp_path / "g*.png"), "--model", model, "-o", tmp_path / "o") == 0
    assert len(list((tmp_path / "o").glob("*.png"))) == 2


def test_stdin_to_stdout(model: Path, tmp_path: Path) -> None:
    src = make_image(tmp_path / "a.png", (24, 20))
    proc = subprocess.run([sys.executable, "-m", "fastnst.cli", "stylize", "-", "--model", str(model)],
                          input=src.read_bytes(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out.png"
    out.write_bytes(proc.stdout)
    assert Image.open(out).size == (24, 20)


def make_bad(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.jpg"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("I am not a picture")
    elif kind == "truncated_jpeg":
        path.write_bytes(make_image(tmp_path / "t.jpg", (64, 64)).read_bytes()[:400])
    elif kind == "truncated_png":
        path = tmp_path / "truncated.png"
        path.write_bytes(make_image(tmp_path / "t.png", (64, 64)).read_bytes()[:200])
    elif kind == "bomb":
        # A valid PNG header declaring 40000 x 40000 pixels: refused before decoding.
        import struct
        import zlib

        ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
        chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
        path = tmp_path / "bomb.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "truncated_jpeg", "truncated_png", "bomb"])
def test_bad_inputs_fail_with_one_line(model: Path, tmp_path: Path, capsys, kind: str) -> None:
    path = make_bad(tmp_path, kind) if kind != "missing" else tmp_path / "nope.jpg"
    assert run(path, "--model", model) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and err.count("\n") == 0 and path.name in err
    assert no_partials(tmp_path)


def test_a_batch_goes_on_past_failures_and_summarises(model: Path, tmp_path: Path, capsys) -> None:
    good = [make_image(tmp_path / f"ok{i}.png", seed=i) for i in range(2)]
    bad = make_bad(tmp_path, "text")
    assert run(*good, bad, tmp_path / "missing.png", "--model", model, "-o", tmp_path / "out") == 1
    assert len(list((tmp_path / "out").glob("*.png"))) == 2
    err = capsys.readouterr().err
    assert "2 of 4 inputs failed" in err and "text.jpg" in err and "missing.png" in err


def test_cmyk_jpeg_is_converted(model: Path, tmp_path: Path) -> None:
    src = make_image(tmp_path / "cmyk.jpg", mode="CMYK")
    assert Image.open(src).mode == "CMYK"
    assert run(src, "--model", model) == 0
    assert Image.open(tmp_path / "cmyk_toy.jpg").mode == "RGB"


def test_unwritable_output_leaves_nothing_behind(model: Path, tmp_path: Path, capsys) -> None:
    src = make_image(tmp_path / "a.png")
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    assert run(src, "--model", model, "-o", blocker / "out.png") == 1
    assert "error:" in capsys.readouterr().err
    assert no_partials(tmp_path)


@pytest.mark.parametrize("content", [b"", b"garbage", None])
def test_bad_model_file_exits_2_with_one_line(tmp_path: Path, capsys, content: bytes | None) -> None:
    model = tmp_path / "m.safetensors"
    if content is not None:
        model.write_bytes(content)
    src = make_image(tmp_path / "a.png")
    assert run(src, "--model", model) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert not (tmp_path / "a_toy.png").exists()


def test_info_describes_the_model(tmp_path: Path, capsys) -> None:
    import json

    net = TransformerNet(channels=8, num_residual=1)
    meta = ModelMeta(style_name="toy", style_image="builtin:udnie", steps=123, image_size=96,
                     description="trained on 5 photos", loss={"vgg": "vgg16", "vgg_weights": "x.safetensors",
                                                              "style_weight": 3.0, "temporal_weight": 10.0})
    path = save_stylizer(net, tmp_path / "m.safetensors", meta)
    assert main(["info", str(path)]) == 0
    rows = dict(line.split(": ", 1) for line in capsys.readouterr().out.strip().splitlines())
    rows = {k.strip(): v for k, v in rows.items()}
    parameters = sum(p.numel() for p in net.parameters())
    assert rows["style"] == "toy" and rows["steps trained"] == "123" and rows["training crop"] == "96 px"
    assert rows["network"].endswith(f"{parameters:,} parameters") and rows["temporal weight"] == "10.0"
    assert "x.safetensors" in rows["loss"] and rows["description"] == "trained on 5 photos"
    assert main(["info", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["parameters"] == parameters and data["steps"] == 123 and data["style_image"] == "builtin:udnie"


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch_on_other_sizes(model: Path, tmp_path: Path, fmt: str, upsample: str) -> None:
    from fastnst.core.modelfile import load_network

    if upsample == "bilinear":
        torch.manual_seed(0)
        model = save_stylizer(TransformerNet(channels=8, num_residual=1, upsample="bilinear"),
                              tmp_path / "b.safetensors", ModelMeta(style_name="b"))

    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime")
        pytest.importorskip("onnx")
    out = tmp_path / ("m.onnx" if fmt == "onnx" else "m.pt")
    assert main(["export", str(model), "--format", fmt, "-o", str(out)]) == 0
    network, _ = load_network(model)
    x = torch.rand(2, 3, 33, 47)  # not the export example's size: height and width are dynamic
    with torch.no_grad():
        expected = network(x).numpy()
    if fmt == "onnx":
        got = ort.InferenceSession(str(out)).run(None, {"image": x.numpy()})[0]
    else:
        got = torch.jit.load(str(out))(x).detach().numpy()
    assert np.abs(got - expected).max() < 1e-4


def test_the_installed_command_runs(model: Path, tmp_path: Path) -> None:
    src = make_image(tmp_path / "a.png")
    proc = subprocess.run([sys.executable, "-m", "fastnst.cli", "stylize", str(src), "--model", str(model),
                           "--strength", "0.5", "--preserve-color", "--scale", "0.75"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "a_toy.png").is_file()


def test_the_stylize_path_imports_neither_lightning_nor_hydra() -> None:
    code = ("import sys, fastnst.cli.main, fastnst.inference.stylizer, fastnst.inference.video, "
            "fastnst.inference.export; "
            "bad = [m for m in ('lightning', 'hydra', 'tensorboard') if m in sys.modules]; print(bad)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_library_errors_get_the_cli_spelling_once(model: Path, tmp_path: Path, capsys) -> None:
    # The library says "strength must be ..."; the command line adds the flag a user typed.
    photo = make_image(tmp_path / "p.png")
    assert main(["stylize", str(photo), "--model", str(model), "--strength", "2"]) == 2
    line = capsys.readouterr().err.strip()
    assert line == "error: strength must be between 0 and 1, got 2.0 (--strength)"


def test_never_overwrites_an_input_or_an_existing_output(model: Path, tmp_path: Path, capsys) -> None:
    photo = make_image(tmp_path / "same.jpg")
    before = photo.read_bytes()
    assert run(photo, "--model", model, "-o", photo) == 1
    assert photo.read_bytes() == before and "is one of the inputs" in capsys.readouterr().err
    assert run(photo, "--model", model) == 0
    out = tmp_path / "same_toy.jpg"
    first = out.stat().st_mtime_ns
    assert run(photo, "--model", model) == 1  # a second run does not replace the first result...
    assert out.stat().st_mtime_ns == first and "--overwrite" in capsys.readouterr().err
    assert run(photo, "--model", model, "--overwrite") == 0  # ...unless asked to


def test_outputs_of_one_run_never_collide(model: Path, tmp_path: Path) -> None:
    a = make_image(tmp_path / "a" / "x.jpg", seed=1)
    b = make_image(tmp_path / "b" / "x.jpg", seed=2)
    assert run(a, b, "--model", model, "-o", tmp_path / "coll") == 0
    outputs = sorted(p.name for p in (tmp_path / "coll").iterdir())
    assert outputs == ["x_toy.jpg", "x_toy_2.jpg"]


def test_rerunning_a_folder_does_not_stylize_its_earlier_outputs(model: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "f"
    make_image(folder / "x.png")
    assert run(folder, "--model", model) == 0
    assert run(folder, "--model", model, "--overwrite") == 0
    assert sorted(p.name for p in folder.iterdir()) == ["x.png", "x_toy.png"]
    assert "skipped 1 earlier output" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--scale", "nan"], ["--scale", "inf"], ["--overlap", "-5"], ["--quality", "200"],
                                    ["--quality", "-5"], ["--temporal-blend", "5"], ["--crf", "99"]])
def test_bad_options_are_one_line_and_exit_2(model: Path, tmp_path: Path, capsys, option: list[str]) -> None:
    photo = make_image(tmp_path / "p.png")
    assert run(photo, "--model", model, *option) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and option[0] in err
    assert not (tmp_path / "p_toy.png").exists()


def test_output_names_that_cannot_work_are_refused(model: Path, tmp_path: Path, capsys) -> None:
    one, two = make_image(tmp_path / "1.png"), make_image(tmp_path / "2.png")
    assert run(one, two, "--model", model, "-o", tmp_path / "multi.jpg") == 2
    assert not (tmp_path / "multi.jpg").exists() and "give a folder" in capsys.readouterr().err
    assert run(one, two, "--model", model, "-o", "-") == 2
    assert not (tmp_path / "-").exists()
    assert run(one, "--model", tmp_path) == 2
    assert "is a folder, not a model file" in capsys.readouterr().err
    # An existing file given as the output folder: refused before anything is read or written.
    existing = tmp_path / "notes"
    existing.write_text("keep me")
    for inputs in ([tmp_path], [one, two], [one]):
        assert run(*inputs, "--model", model, "-o", existing) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "existing file" in err and "(--output)" in err
    assert existing.read_text() == "keep me" and not list(tmp_path.glob("*_toy.png"))


def test_a_pixel_bomb_names_the_limit_and_the_limit_can_be_lifted(model: Path, tmp_path: Path, capsys) -> None:
    bomb = make_bad(tmp_path, "bomb")
    assert run(bomb, "--model", model) == 1
    err = capsys.readouterr().err
    assert "40000x40000 = 1600 Mpx, over the limit of 120 Mpx" in err and "--max-pixels" in err
    photo = make_image(tmp_path / "p.png", (48, 40))
    assert run(photo, "--model", model, "--max-pixels", "1000") == 1  # 1,920 px: over a tiny limit
    assert run(photo, "--model", model, "--max-pixels", "0") == 0  # 0: no limit


def test_a_bomb_on_stdin_says_what_it_is(model: Path, tmp_path: Path) -> None:
    bomb = make_bad(tmp_path, "bomb")
    proc = subprocess.run([sys.executable, "-m", "fastnst.cli", "stylize", "-", "--model", str(model)],
                          input=bomb.read_bytes(), capture_output=True, timeout=120)
    assert proc.returncode == 1 and b"stdin declares 40000x40000" in proc.stderr


def test_exif_orientation_is_applied_to_stdin_too(model: Path, tmp_path: Path) -> None:
    import io

    img = Image.open(make_image(tmp_path / "wide.jpg", (64, 32)))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90°: the photo is shown 32 wide, 64 high
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", exif=exif)
    proc = subprocess.run([sys.executable, "-m", "fastnst.cli", "stylize", "-", "--model", str(model)],
                          input=buffer.getvalue(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(io.BytesIO(proc.stdout)).size == (32, 64)


def test_big_jpegs_decode_at_a_reduced_scale_when_max_size_asks(tmp_path: Path) -> None:
    from fastnst.core.images import open_image

    path = tmp_path / "big.jpg"
    Image.new("RGB", (2000, 1500), (120, 60, 30)).save(path, quality=80)
    assert open_image(path).size == (2000, 1500)
    small = open_image(path, long_side=200)
    assert small.size == (500, 375)  # 1/4: the smallest JPEG scale that still covers 200 px


def test_app_without_the_extra_says_what_to_install(tmp_path: Path) -> None:
    # A core install has no web server: `fastnst app` names the extra instead of a traceback.
    code = ("import sys; sys.modules['starlette'] = None; from fastnst.cli.main import main; "
            "sys.exit(main(['app']))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: the web app needs the [app] extra: pip install 'fastnst[app]' " \
                                  "(starlette is missing)"
