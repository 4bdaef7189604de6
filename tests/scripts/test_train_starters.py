"""scripts/data/train_starters.py: train and pack starters, or fine-tune the shipped ones (--start-from)."""

from __future__ import annotations

from pathlib import Path

import torch

from fastnst.core.modelfile import load_network, read_metadata
from scripts.data import train_starters

from samples import make_image

FAST = ["--", "data.num_val=2", "style.size=64", "+trainer.enable_model_summary=false"]


def test_a_starter_is_fine_tuned_from_its_shipped_weights_with_its_age_kept(tmp_path: Path) -> None:
    for i in range(4):
        make_image(tmp_path / "photos" / f"p{i}.png", (80, 64), seed=i)
    common = ["--data", str(tmp_path / "photos"), "--vgg-weights", "random", "--styles", "udnie", "--steps", "2",
              "--image-size", "32", "--batch-size", "2", "--workers", "0"]
    train_starters.main([*common, "--out", str(tmp_path / "a"), "--pack-dir", str(tmp_path / "shipped"),
                         *FAST, "model.upsample=nearest"])
    shipped = tmp_path / "shipped" / "udnie.safetensors"
    assert read_metadata(shipped).steps == 2 and "upsample" not in read_metadata(shipped).network
    train_starters.main([*common, "--out", str(tmp_path / "b"), "--pack-dir", str(tmp_path / "tuned"),
                         "--start-from", str(tmp_path / "shipped"), *FAST, "model.upsample=bilinear",
                         "optimizer.lr=1e-30"])
    tuned, meta = load_network(tmp_path / "tuned" / "udnie.safetensors")
    assert meta.steps == 4 and meta.network["upsample"] == "bilinear"
    assert meta.description.startswith(read_metadata(shipped).description)
    assert "model.upsample=bilinear" in meta.description
    torch.testing.assert_close(tuned.conv1.conv.weight, load_network(shipped)[0].conv1.conv.weight)  # its weights
