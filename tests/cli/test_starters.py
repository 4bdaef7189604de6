"""Starter models: shipped in the package, used by name, listed by `fastnst models`."""

from pathlib import Path

import pytest
import torch

from fastnst.cli.main import main
from fastnst.core import modelfile
from fastnst.core.errors import FastNSTError
from fastnst.core.modelfile import (
    ModelMeta,
    load_network,
    read_signatures,
    resolve_model,
    save_stylizer,
    starter_models,
)
from fastnst.core.styles import builtin_styles
from fastnst.core.transformer import TransformerNet

from conftest import make_image


@pytest.fixture
def starters(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    save_stylizer(TransformerNet(channels=8, num_residual=1), folder / "toy.safetensors",
                  ModelMeta(style_name="toy", description="a toy, 3 steps"), dtype=torch.float16)
    monkeypatch.setattr(modelfile, "STARTER_DIR", folder)
    return folder


def test_a_starter_name_resolves_and_a_real_file_wins(starters: Path, tmp_path: Path, monkeypatch) -> None:
    assert resolve_model("toy") == starters / "toy.safetensors"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy").write_bytes(b"")  # a file named like the starter is taken as that file
    assert resolve_model("toy") == Path("toy")
    with pytest.raises(FastNSTError, match="no starter model of that name; starters: toy"):
        resolve_model("nope")


def test_stylize_by_name_and_models_lists_them(starters: Path, tmp_path: Path, capsys) -> None:
    photo = make_image(tmp_path / "p.png")
    assert main(["stylize", str(photo), "--model", "toy", "--device", "cpu"]) == 0
    assert (tmp_path / "p_toy.png").is_file()
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "toy" in out and "a toy, 3 steps" in out


def test_export_of_a_starter_writes_to_the_current_folder(starters: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["export", "toy", "--format", "torchscript"]) == 0
    assert (tmp_path / "toy.pt").is_file() and not (starters / "toy.pt").exists()


SHIPPED = starter_models()


@pytest.mark.skipif(not SHIPPED, reason="no starter models in this checkout")
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_each_shipped_starter_is_small_honest_and_works(name: str) -> None:
    path = SHIPPED[name]
    network, meta = load_network(path)
    assert meta.style_name == name
    assert set(meta.style_names) <= set(builtin_styles())  # every style is a painting that ships
    # Trained on the real ImageNet VGG16, with the recipe in the metadata (`fastnst info` shows it).
    assert "steps" in meta.description and "vgg16_imagenet" in meta.description and meta.steps
    assert meta.loss["vgg_weights"] == "vgg16_imagenet.safetensors"
    assert meta.loss["content_norm"] == meta.loss["style_norm"] == "target" and meta.image_size
    signatures = read_signatures(path)  # a multi-style starter is the fit base: it knows its paintings' looks
    assert (signatures is not None) == (network.num_styles > 1)
    kept = sum(p.numel() for p in network.parameters()) + (signatures.numel() if signatures is not None else 0)
    assert path.stat().st_size < 2 * kept + 100_000  # fp16
    x = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        outputs = [network(x, torch.eye(network.num_styles)[k] if network.num_styles > 1 else None)
                   for k in range(network.num_styles)]
    for y in outputs:
        assert y.shape == x.shape and (y - x).abs().mean() > 0.02  # each style changes the photo
    for a, b in zip(outputs, outputs[1:], strict=False):
        assert (a - b).abs().mean() > 0.01  # and the styles differ


def test_the_package_stays_small() -> None:
    assets = Path(modelfile.__file__).resolve().parent.parent / "assets"
    total = sum(p.stat().st_size for p in assets.rglob("*") if p.is_file())
    # Eight full `johnson` starters at fp16 (3.4 MB each, since session 12), the multistyle base and the
    # paintings: ~32 MB. A ninth full network, or anything as big, must be a decision, not a drift.
    assert total < 36_000_000
