"""Real photos and the fox clip from ../shared/assets; skipped cleanly where it is absent (a user's clone)."""

from pathlib import Path

import av
import pytest
import torch

from fastnst.core.images import find_images, load_rgb, open_image
from fastnst.core.modelfile import ModelMeta, save_stylizer
from fastnst.core.transformer import TransformerNet
from fastnst.inference.stylizer import StylizeOptions, Stylizer
from fastnst.inference.video import stylize_video

from conftest import SHARED

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/assets is not here")


@pytest.fixture(scope="module")
def stylizer(tmp_path_factory: pytest.TempPathFactory) -> Stylizer:
    torch.manual_seed(2)
    path = save_stylizer(TransformerNet(channels=8, num_residual=2),
                         tmp_path_factory.mktemp("m") / "toy.safetensors", ModelMeta(style_name="toy"))
    # fp32 stated: the tiling tolerance below is for tiling alone, not bf16's rounding (auto is bf16 on such CPUs).
    return Stylizer.from_file(path, device="cpu", precision="fp32")


def test_every_shared_image_opens() -> None:
    files = find_images(SHARED / "styles") + find_images(SHARED / "content")
    assert len(files) >= 20
    for path in files:
        assert min(open_image(path).size) > 100


def test_a_real_photo_tiles_like_it_runs_whole(stylizer: Stylizer) -> None:
    x = torch.nn.functional.interpolate(load_rgb(SHARED / "content" / "chicago.jpg"), size=(118, 178),
                                        mode="bilinear", antialias=True)
    whole = stylizer.stylize_tensor(x)
    tiled = stylizer.stylize_tensor(x, StylizeOptions(tile=64, overlap=24))
    assert (whole - tiled).abs().max() < 0.01


def test_the_fox_clip_keeps_its_frames_and_rate(stylizer: Stylizer, tmp_path: Path) -> None:
    src = tmp_path / "fox_head.mp4"
    with av.open(str(SHARED / "video" / "fox.mp4")) as inp, av.open(str(src), "w") as out:
        v_in = inp.streams.video[0]
        v = out.add_stream_from_template(v_in)
        v.time_base = v_in.time_base
        for i, packet in enumerate(inp.demux(v_in)):
            if i >= 30 or packet.dts is None:
                break
            packet.stream = v
            out.mux(packet)
    report = stylize_video(stylizer, src, tmp_path / "out.mp4", StylizeOptions(max_size=64), progress=False)
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == report.frames >= 25
        assert abs(float(c.streams.video[0].average_rate) - 29.97) < 0.1
