"""scripts/quality/temporal_experiment.py: a run per temporal weight, compared on held-out photos and a clip."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from PIL import Image

from fastnst.core.modelfile import ModelMeta, load_network, save_stylizer
from fastnst.core.networks.johnson import TransformerNet
from scripts.quality import temporal_experiment

from samples import make_clip, make_image

FAST = ["--", "loss.vgg_weights=random", "data.batch_size=2", "data.num_workers=0", "data.num_val=2",
        "style.size=64", "optimizer.lr=1e-2", "+trainer.enable_model_summary=false"]


def test_one_fine_tune_per_weight_is_compared_on_held_out_photos_and_a_clip(tmp_path: Path, capsys) -> None:
    for i in range(4):
        make_image(tmp_path / "photos" / f"p{i}.png", (80, 64), seed=i)
    make_image(tmp_path / "held" / "h.png", (40, 32), seed=9)
    clip = make_clip(tmp_path / "clip.mp4", frames=6)
    torch.manual_seed(0)
    network = TransformerNet(channels=16, upsample="bilinear")
    with torch.no_grad():
        network.deconv3.conv.bias.fill_(0.5)  # a mark no fresh network has (its biases are within ±0.03)
    start = save_stylizer(network, tmp_path / "start.safetensors", ModelMeta(style_name="udnie",
                                                                            style_image="builtin:udnie"))
    temporal_experiment.main(["--style", "udnie", "--start-from", str(start), "--data", str(tmp_path / "photos"),
                              "--held-out", str(tmp_path / "held"), "--image-size", "32", "--eval-size", "48",
                              "--cpu", "--steps", "6", "--weights", "1e4", "--clip", str(clip),
                              "--out", str(tmp_path / "runs"), "--strip", str(tmp_path / "strip.jpg"), *FAST])
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in lines if line.startswith("| ")}
    assert set(rows) == {"temporal_weight", "0", "10000"}
    flow = importlib.util.find_spec("cv2") is not None  # the real clip's warping error needs OpenCV's optical flow
    assert len(rows["0"]) == (10 if flow else 8)  # loss, style, warping errors, flicker ratio: each with its change
    baseline, temporal = ([float(cell) for cell in rows[w][::2]] for w in ("0", "10000"))
    assert all(a != b for a, b in zip(baseline, temporal, strict=True))  # the weight reached the second run's training
    assert [float(cell.strip(" +%")) for cell in rows["10000"][1::2]] == pytest.approx(
        [100 * (b / a - 1) for a, b in zip(baseline, temporal, strict=True)], rel=0.01, abs=0.2)
    assert Image.open(tmp_path / "strip.jpg").size == (192, 2 * 192)  # one held-out photo, a row per weight
    for weight in ("w0", "w10000"):  # each a fine-tune of the start: its weights, moved by 6 steps of Adam
        tuned, meta = load_network(tmp_path / "runs" / weight / "udnie.safetensors")
        assert meta.steps == 6 and meta.description == "started from start.safetensors"
        bias = tuned.deconv3.conv.bias
        assert (bias - 0.5).abs().max() < 0.1 and not torch.equal(bias, network.deconv3.conv.bias)
