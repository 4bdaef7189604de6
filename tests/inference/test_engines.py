"""The OpenVINO engine against PyTorch: same pictures (PSNR on 8-bit images), every option, the
conversion cache, and clear errors or a fallback where it cannot run."""

import logging
import os
from pathlib import Path

import pytest
import torch

from fastnst.cli.main import main
from fastnst.core import device as device_module
from fastnst.core.device import resolve_dtype
from fastnst.core.errors import FastNSTError
from fastnst.core.modelfile import ModelMeta, save_stylizer
from fastnst.core.transformer import TransformerNet
from fastnst.inference import engines
from fastnst.inference import stylizer as stylizer_module
from fastnst.inference.stylizer import StylizeOptions, Stylizer

from conftest import make_image
from samples import spread_network

needs_openvino = pytest.mark.skipif(not engines.openvino_available(), reason="openvino is not installed")


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")  # one conversion per network for the whole module


@pytest.fixture(autouse=True)
def _cache(shared_cache: Path, monkeypatch) -> Path:
    monkeypatch.setenv("FASTNST_CACHE", str(shared_cache))
    monkeypatch.delenv("FASTNST_ENGINE")
    return shared_cache


def network(styles: int = 1) -> TransformerNet:
    return spread_network(styles, residual=2, spread=0.5)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    a8, b8 = (t.mul(255).round().clamp(0, 255) for t in (a, b))
    mse = (a8 - b8).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(255.0 ** 2 / mse)).item()


def assert_paints_like_pytorch(fast: Stylizer, size: tuple[int, int]) -> None:
    """``fast`` (on OpenVINO, the test ``network()``) against PyTorch fp32 on a random image of ``size``."""
    x = torch.rand(1, 3, *size)
    reference = Stylizer(network(), device="cpu", precision="fp32", engine="torch")
    assert psnr(fast.stylize_tensor(x), reference.stylize_tensor(x)) >= 40


def pair(styles: int = 1) -> tuple[Stylizer, Stylizer]:
    net, meta = network(styles), ModelMeta(style_name="m", styles=["a", "b", "c"][:styles] if styles > 1 else [])
    return (Stylizer(net, meta, device="cpu", precision="fp32", engine="openvino"),
            Stylizer(network(styles), meta, device="cpu", precision="fp32", engine="torch"))


@needs_openvino
@pytest.mark.parametrize("options", [
    StylizeOptions(), StylizeOptions(strength=0.6, preserve_color=True), StylizeOptions(scale=0.5),
    StylizeOptions(tile=48, overlap=16),
], ids=["plain", "strength+colour", "scale", "tiled"])
def test_openvino_paints_what_pytorch_paints(options: StylizeOptions) -> None:
    fast, reference = pair()
    assert fast.engine == "openvino fp32" and reference.engine == "torch float32"
    x = torch.rand(2, 3, 80, 96)
    assert psnr(fast.stylize_tensor(x, options), reference.stylize_tensor(x, options)) >= 40


@needs_openvino
def test_styles_blends_and_tiles_of_a_multi_style_model() -> None:
    fast, reference = pair(styles=3)
    x = torch.rand(1, 3, 80, 96)
    for options in (StylizeOptions(style="b"), StylizeOptions(style="a:0.3,c:0.7", tile=48, overlap=16)):
        assert psnr(fast.stylize_tensor(x, options), reference.stylize_tensor(x, options)) >= 40
    per_frame = torch.eye(3)[[0, 2]]  # a video morph gives each frame its own weights
    x2 = torch.rand(2, 3, 40, 48)
    assert psnr(fast.stylize_tensor(x2, style=per_frame), reference.stylize_tensor(x2, style=per_frame)) >= 40


@needs_openvino
def test_tiny_images_still_work() -> None:
    fast, reference = pair()
    x = torch.rand(1, 3, 3, 7)  # below what the converted graph takes: PyTorch runs it
    torch.testing.assert_close(fast.stylize_tensor(x), reference.stylize_tensor(x))


@needs_openvino
def test_the_conversion_is_cached_and_a_corrupt_entry_is_rebuilt(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("FASTNST_CACHE", str(tmp_path))
    Stylizer(network(), device="cpu", precision="fp32", engine="openvino")
    entries = sorted(tmp_path.glob("openvino/*-plain.*"))
    assert [p.suffix for p in entries] == [".bin", ".xml"]
    real_convert = engines.OpenVINOEngine._convert
    monkeypatch.setattr(engines.OpenVINOEngine, "_convert", lambda *a: pytest.fail("converted again"))
    Stylizer(network(), device="cpu", precision="fp32", engine="openvino")  # from the cache
    entries[0].write_bytes(b"\0" * 64)  # a truncated weights file
    monkeypatch.setattr(engines.OpenVINOEngine, "_convert", real_convert)
    with caplog.at_level(logging.WARNING):
        fast = Stylizer(network(), device="cpu", precision="fp32", engine="openvino")
    assert "rebuilding the OpenVINO cache entry" in caplog.text
    assert entries[0].stat().st_size > 64
    assert_paints_like_pytorch(fast, (40, 40))


@needs_openvino
@pytest.mark.parametrize("where", ["read-only", "a file", "under /proc"])
def test_no_usable_cache_folder_still_stylizes(tmp_path: Path, monkeypatch, caplog, where: str) -> None:
    if where == "read-only":
        cache = tmp_path / "ro"
        cache.mkdir()
        cache.chmod(0o500)
        if os.access(cache, os.W_OK):  # root ignores permission bits: a read-only mount is what it can't write
            pytest.skip("this user can write to read-only folders")
    elif where == "a file":
        cache = tmp_path / "cache"
        cache.mkdir()
        (cache / "openvino").write_text("not a folder")
    else:
        cache = Path("/proc/self/no-such-place")
    monkeypatch.setenv("FASTNST_CACHE", str(cache))
    with caplog.at_level(logging.WARNING):
        fast = Stylizer(network(), device="cpu", precision="fp32", engine="openvino")
    assert "cannot write the OpenVINO cache" in caplog.text
    assert_paints_like_pytorch(fast, (40, 40))


@needs_openvino
def test_a_cached_graph_with_a_fixed_input_size_is_rebuilt(tmp_path: Path, monkeypatch, caplog) -> None:
    import openvino as ov

    monkeypatch.setenv("FASTNST_CACHE", str(tmp_path))
    Stylizer(network(), device="cpu", precision="fp32", engine="openvino")
    xml = next(tmp_path.glob("openvino/*-plain.xml"))
    model = ov.Core().read_model(str(xml))
    model.reshape([1, 3, 24, 32])  # the right weights, but only the probe's own size
    fixed = tmp_path / "fixed.xml"
    ov.save_model(model, str(fixed), compress_to_fp16=False)  # beside it: the entry's .bin is memory-mapped
    del model
    fixed.with_suffix(".bin").replace(xml.with_suffix(".bin"))
    fixed.replace(xml)
    with caplog.at_level(logging.WARNING):
        fast = Stylizer(network(), device="cpu", precision="fp32", engine="openvino")
    assert "rebuilding the OpenVINO cache entry" in caplog.text
    assert_paints_like_pytorch(fast, (40, 56))


@needs_openvino
def test_a_graph_that_fails_its_probe_is_not_kept(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FASTNST_CACHE", str(tmp_path))
    real_convert = engines.OpenVINOEngine._convert

    torch.manual_seed(5)
    other = TransformerNet(channels=8, num_residual=2).eval()

    def broken(self, variant):  # a conversion that computes something else: another network's graph
        mine, self.network = self.network, other
        try:
            return real_convert(self, variant)
        finally:
            self.network = mine

    monkeypatch.setattr(engines.OpenVINOEngine, "_convert", broken)
    with pytest.raises(FastNSTError, match="differs from PyTorch") as refused:
        engines.OpenVINOEngine(network(), "fp32")
    assert refused.value.param == "engine"
    assert not list(tmp_path.glob("openvino/*"))  # next run converts afresh instead of re-probing a bad entry


def test_openvino_missing_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(stylizer_module, "openvino_available", lambda: False)
    monkeypatch.setattr(engines, "openvino_available", lambda: False)
    model = save_stylizer(network(), tmp_path / "m.safetensors", ModelMeta(style_name="m"))
    photo = make_image(tmp_path / "p.png")
    assert main(["stylize", str(photo), "-m", str(model), "--engine", "openvino"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: the openvino engine is not installed (pip install openvino) (--engine)"
    assert main(["stylize", str(photo), "-m", str(model)]) == 0  # auto: PyTorch, silently
    assert Stylizer(network(), device="cpu").engine.startswith("torch")


def test_auto_falls_back_to_pytorch_with_one_warning(monkeypatch, caplog) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise FastNSTError("OpenVINO cannot compile this model (a test)", param="engine")

    monkeypatch.setattr(stylizer_module, "openvino_available", lambda: True)
    monkeypatch.setattr(stylizer_module, "OpenVINOEngine", broken)
    with caplog.at_level(logging.WARNING):
        stylizer = Stylizer(network(), device="cpu", precision="fp32")
    assert stylizer.engine == "torch float32"
    assert caplog.text.count("OpenVINO is not usable here") == 1
    with pytest.raises(FastNSTError, match="cannot compile"):
        Stylizer(network(), device="cpu", engine="openvino")


def test_engine_options_that_cannot_work_are_refused() -> None:
    with pytest.raises(FastNSTError, match="unknown engine"):
        Stylizer(network(), device="cpu", engine="tensorrt")
    with pytest.raises(FastNSTError, match="PyTorch options"):
        Stylizer(network(), device="cpu", engine="openvino", compile=True)
    assert Stylizer(network(), device="cpu", channels_last=True).engine.startswith("torch")  # auto: torch


def test_precision_auto_on_the_cpu_follows_native_bf16(monkeypatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(device_module, "native_bf16_cpu", lambda: True)
    assert resolve_dtype("auto", cpu) == torch.bfloat16
    monkeypatch.setattr(device_module, "native_bf16_cpu", lambda: False)
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("fp32", cpu) == torch.float32


needs_nncf = pytest.mark.skipif(not (engines.openvino_available() and engines.nncf_available()),
                                reason="int8 needs openvino and nncf (the [int8] extra)")


@needs_nncf
@pytest.mark.parametrize("styles", [1, 3])
def test_int8_paints_close_to_fp32_and_is_cached(styles: int, tmp_path: Path, monkeypatch, small_calibration) -> None:
    monkeypatch.setenv("FASTNST_CACHE", str(tmp_path))
    net, meta = network(styles), ModelMeta(style_name="m", styles=["a", "b", "c"][:styles] if styles > 1 else [])
    fast = Stylizer(net, meta, device="cpu", precision="int8", engine="openvino")
    reference = Stylizer(network(styles), meta, device="cpu", precision="fp32", engine="torch")
    assert fast.engine == "openvino int8"
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 16), size=(96, 128), mode="bilinear")
    options = StylizeOptions(style="a:0.5,c:0.5" if styles > 1 else None)
    score = psnr(fast.stylize_tensor(x, options), reference.stylize_tensor(x, options))
    assert 25 < score < 60  # close, and not the fp32 graph under another name
    assert len(list((tmp_path / "openvino").glob("*-int8m-*.xml"))) == 1

    def no_second_quantization(*args: object) -> None:
        raise AssertionError("the cached INT8 graph should have been used")

    monkeypatch.setattr(engines, "quantize", no_second_quantization)
    again = Stylizer(network(styles), meta, device="cpu", precision="int8", engine="openvino")
    assert torch.equal(again.stylize_tensor(x, options), fast.stylize_tensor(x, options))


@needs_openvino
def test_int8_needs_the_openvino_engine_and_nncf(monkeypatch) -> None:
    with pytest.raises(FastNSTError, match=r"precision int8 runs on the openvino engine"):
        Stylizer(network(), device="cpu", precision="int8", engine="torch")
    monkeypatch.setattr(engines, "nncf_available", lambda: False)
    with pytest.raises(FastNSTError, match=r"precision int8 needs NNCF: pip install 'fastnst\[int8\]'"):
        Stylizer(network(), device="cpu", precision="int8", engine="auto")
