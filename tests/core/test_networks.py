"""Networks are parts: every registered architecture can be saved, reloaded, grown by a style, tiled and run
by every engine, and a file names the one it holds."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from fastnst.core.errors import FastNSTError
from fastnst.core.modelfile import ModelMeta, load_network, read_metadata, save_stylizer
from fastnst.core.networks import StyleNetwork, architectures, network_class
from fastnst.core.transformer import TransformerNet

SMALL = {"johnson": {"channels": 8, "num_residual": 1}, "light": {"channels": 8, "num_residual": 1}}


def small(arch: str, styles: int = 1, upsample: str = "nearest") -> StyleNetwork:
    torch.manual_seed(0)
    net = network_class(arch)(**SMALL[arch], num_styles=styles, upsample=upsample)
    for norm in net.norm_layers():  # spread (γ, β) so that styles differ
        torch.nn.init.normal_(norm.weight, 1.0, 0.5)
        torch.nn.init.normal_(norm.bias, 0.0, 0.5)
    return net.eval()


def test_the_registry_holds_johnson_and_the_light_network() -> None:
    assert {"johnson", "light"} <= set(architectures())
    assert network_class("johnson") is TransformerNet
    assert set(SMALL) == set(architectures())  # a new network gets its row here, and every test below


@pytest.mark.parametrize("arch", sorted(architectures()))
def test_any_size_in_gives_the_same_size_out_in_range(arch: str) -> None:
    net = small(arch)
    for h, w in [(1, 2), (7, 9), (33, 20)]:
        y = net(torch.rand(1, 3, h, w))
        assert y.shape == (1, 3, h, w) and 0 <= y.min() and y.max() <= 1


@pytest.mark.parametrize("arch", sorted(architectures()))
def test_a_file_round_trips_and_names_its_architecture(arch: str, tmp_path: Path) -> None:
    net = small(arch, styles=2)
    path = save_stylizer(net, tmp_path / "m.safetensors", ModelMeta(style_name="m", styles=["a", "b"]))
    loaded, meta = load_network(path)
    assert type(loaded) is type(net) and meta.arch == arch and loaded.config == net.config
    x = torch.rand(2, 3, 24, 20)
    torch.testing.assert_close(loaded(x, torch.tensor([0.3, 0.7])), net(x, torch.tensor([0.3, 0.7])))


@pytest.mark.parametrize("arch", sorted(architectures()))
def test_a_new_style_starts_at_the_mean_and_only_its_rows_train(arch: str) -> None:
    net = small(arch, styles=2)
    grown = net.with_new_style()
    assert grown.num_styles == 3 and type(grown) is type(net)
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(grown(x, torch.tensor([1.0, 0, 0])), net(x, torch.tensor([1.0, 0])))
    grown.train_only_styles([2])
    grown(x, torch.tensor([0.2, 0.3, 0.5])).sum().backward()
    for norm in grown.norm_layers():
        assert norm.weight.grad[:2].abs().sum() == 0 and norm.weight.grad[2].abs().sum() > 0
    assert all(p.grad is None for m in grown.modules() if isinstance(m, torch.nn.Conv2d) for p in m.parameters())


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
@pytest.mark.parametrize("arch", sorted(architectures()))
def test_tiles_match_the_whole_image(arch: str, upsample: str) -> None:
    from fastnst.inference.stylizer import StylizeOptions, Stylizer

    stylizer = Stylizer(small(arch, upsample=upsample), device="cpu", precision="fp32", engine="torch")
    x = torch.rand(1, 3, 96, 80)
    whole = stylizer.stylize_tensor(x)
    tiled = stylizer.stylize_tensor(x, StylizeOptions(tile=48, overlap=16))
    assert (whole - tiled).abs().mean() < 0.01


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
@pytest.mark.parametrize("arch", sorted(architectures()))
def test_the_openvino_engine_runs_every_network(arch: str, upsample: str) -> None:
    pytest.importorskip("openvino")
    from fastnst.inference.stylizer import Stylizer

    net = small(arch, upsample=upsample)
    x = torch.rand(1, 3, 40, 36)
    ours = Stylizer(net, device="cpu", precision="fp32", engine="torch").stylize_tensor(x)
    theirs = Stylizer(net, device="cpu", precision="fp32", engine="openvino").stylize_tensor(x)
    assert (ours - theirs).abs().max() < 1e-3


def test_an_old_file_without_arch_loads_as_johnsons_network(tmp_path: Path) -> None:
    net = small("johnson")
    header = {"format": "fastnst.stylizer", "architecture": "TransformerNet", "format_version": 2,
              "style_name": "old", "network": net.config, "loss": {}, "fastnst_version": "0.1.0"}
    save_file(net.state_dict(), str(tmp_path / "old.safetensors"), {k: json.dumps(v) for k, v in header.items()})
    loaded, meta = load_network(tmp_path / "old.safetensors")
    assert isinstance(loaded, TransformerNet) and meta.arch == "johnson"


def test_an_unknown_architecture_is_one_line(tmp_path: Path) -> None:
    path = save_stylizer(small("johnson"), tmp_path / "m.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        header, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    header["arch"] = json.dumps("transformer_xl")
    save_file(state, str(path), header)
    with pytest.raises(FastNSTError, match="unknown network architecture 'transformer_xl'") as err:
        read_metadata(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("config", [{"channels": 10_000}, {"expansion": 0}, {"output": "tanh"}, {"depth": 3},
                                    {"channels": True}])
def test_network_settings_out_of_their_limits_are_refused_before_building(config: dict) -> None:
    arch = "light" if "expansion" in config else "johnson"
    with pytest.raises(FastNSTError):
        ModelMeta(arch=arch, network={**SMALL[arch], **config})


@pytest.mark.parametrize("arch", sorted(architectures()))
def test_the_upsampling_is_a_setting_files_keep_and_old_files_upsample_nearest(arch: str, tmp_path: Path) -> None:
    nearest = small(arch)
    assert "upsample" not in nearest.config  # files of networks that were possible before stay as they were
    smooth = network_class(arch)(**{**nearest.config, "upsample": "bilinear"})
    smooth.load_state_dict(nearest.state_dict())  # the mode holds no weight
    x = torch.rand(1, 3, 24, 20)
    assert (smooth(x) - nearest(x)).abs().max() > 1e-3  # but it changes the picture
    path = save_stylizer(smooth.eval(), tmp_path / "m.safetensors", ModelMeta(style_name="m"))
    loaded, meta = load_network(path)
    assert meta.network["upsample"] == "bilinear" and loaded.config == smooth.config
    torch.testing.assert_close(loaded(x), smooth(x))
    with pytest.raises(ValueError, match="upsample"):
        network_class(arch).check_config({**nearest.config, "upsample": "bicubic"})
