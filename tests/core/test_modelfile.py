import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from fastnst.core.errors import FastNSTError
from fastnst.core.modelfile import ModelMeta, load_network, read_metadata, save_stylizer
from fastnst.core.transformer import TransformerNet


def test_metadata_and_weights_round_trip(tmp_path: Path) -> None:
    net = TransformerNet(channels=8, num_residual=1)
    path = save_stylizer(net, tmp_path / "m.safetensors", ModelMeta(style_name="x", steps=7))
    loaded, meta = load_network(path)
    assert meta.style_name == "x" and meta.steps == 7 and meta.network == net.config
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(loaded(x), net.eval()(x))


def test_a_lightning_style_checkpoint_loads(tmp_path: Path) -> None:
    net = TransformerNet(channels=8, num_residual=1)
    ckpt = {"state_dict": {f"network.{k}": v for k, v in net.state_dict().items()},
            "hyper_parameters": {"network": net.config, "style_name": "x"}, "global_step": 5}
    torch.save(ckpt, tmp_path / "m.ckpt")
    _, meta = load_network(tmp_path / "m.ckpt")
    assert meta.steps == 5 and meta.style_name == "x"


class Exploit:
    """A pickle that would create a file when unpickled with weights_only=False."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.marker,))


def test_a_crafted_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.ckpt", "wb") as f:
        pickle.dump({"state_dict": {}, "hyper_parameters": {"network": {}}, "x": Exploit(marker)}, f)
    with pytest.raises(FastNSTError, match="not a loadable checkpoint"):
        load_network(tmp_path / "evil.ckpt")
    assert not marker.exists()


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = save_stylizer(TransformerNet(channels=8, num_residual=1), tmp_path / "m.safetensors")
    import json

    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta["network"] = json.dumps({"channels": 16, "num_residual": 1})
    save_file(tensors, str(tmp_path / "lie.safetensors"), metadata=meta)
    with pytest.raises(FastNSTError, match="do not match"):
        load_network(tmp_path / "lie.safetensors")


@pytest.mark.parametrize("case", ["missing", "text", "foreign", "truncated"])
def test_bad_model_files_are_clear_errors(tmp_path: Path, case: str) -> None:
    path = tmp_path / "m.safetensors"
    if case == "text":
        path.write_text("hello")
    elif case == "foreign":
        save_file({"w": torch.zeros(2)}, str(path))
    elif case == "truncated":
        good = save_stylizer(TransformerNet(channels=8, num_residual=1), tmp_path / "g.safetensors")
        path.write_bytes(good.read_bytes()[:500])
    with pytest.raises(FastNSTError, match="m.safetensors"):
        read_metadata(path) if case != "truncated" else load_network(path)


def _rewrite(path: Path, out: Path, **changes: object) -> Path:
    """A copy of a model file with some metadata fields replaced (as an attacker would)."""
    import json

    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta.update({k: json.dumps(v) for k, v in changes.items()})
    save_file(tensors, str(out), metadata=meta)
    return out


@pytest.mark.parametrize("field, value, message", [
    ("style_name", "../../etc/evil", "not a plain name"),
    ("style_name", "a/b", "not a plain name"),
    ("style_name", ".hidden", "not a plain name"),
    ("style_name", 42, "wrong type"),
    ("steps", "many", "wrong type"),
    ("network", {"channels": 10**6, "num_residual": 1}, "channels must be"),
    ("network", {"channels": 8, "num_residual": 1, "evil": 1}, "unknown network settings"),
])
def test_untrusted_metadata_is_checked_on_load(tmp_path: Path, field: str, value: object, message: str) -> None:
    good = save_stylizer(TransformerNet(channels=8, num_residual=1), tmp_path / "g.safetensors")
    bad = _rewrite(good, tmp_path / "bad.safetensors", **{field: value})
    with pytest.raises(FastNSTError, match=message):
        load_network(bad)


def test_weights_that_are_not_finite_are_refused(tmp_path: Path) -> None:
    net = TransformerNet(channels=8, num_residual=1)
    with torch.no_grad():
        net.conv1.conv.weight[0, 0, 0, 0] = float("nan")
    path = save_stylizer(net, tmp_path / "nan.safetensors")
    with pytest.raises(FastNSTError, match="NaN or infinite"):
        load_network(path)


def test_fp16_files_are_half_the_size_and_load_in_fp32(tmp_path: Path) -> None:
    net = TransformerNet(channels=8, num_residual=1)
    full = save_stylizer(net, tmp_path / "full.safetensors")
    half = save_stylizer(net, tmp_path / "half.safetensors", ModelMeta(style_name="h"), dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, meta = load_network(half)
    assert meta.style_name == "h" and loaded.conv1.conv.weight.dtype == torch.float32
    x = torch.rand(1, 3, 24, 24)
    torch.testing.assert_close(loaded(x), net.eval()(x), atol=5e-3, rtol=0)


def test_version_1_files_still_load(tmp_path: Path) -> None:
    good = save_stylizer(TransformerNet(channels=8, num_residual=1), tmp_path / "g.safetensors")
    old = _rewrite(good, tmp_path / "v1.safetensors", format_version=1, temporal_weight=10.0,
                   loss={"vgg": "vgg16", "style_weight": 1e5})
    _, meta = load_network(old)
    assert meta.temporal_weight == 10.0 and meta.loss["style_weight"] == 1e5


def test_a_tiny_file_declaring_a_huge_network_is_refused_without_building_it(tmp_path: Path) -> None:
    import json
    import resource

    header = {"format": "fastnst.stylizer", "architecture": "TransformerNet", "format_version": 2,
              "network": {"channels": 256, "num_residual": 64}, "style_name": "bomb"}
    path = tmp_path / "bomb.safetensors"
    save_file({"conv1.conv.weight": torch.zeros(1)}, str(path), metadata={k: json.dumps(v) for k, v in header.items()})
    assert path.stat().st_size < 2048
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(FastNSTError, match="do not match"):
        load_network(path)
    # Building that network would take gigabytes (5.7 GB measured); checking shapes takes none.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB


@pytest.mark.parametrize("name", ["cat_evil\n", "a..b", "../x", "", "x" * 65, "a/b"])
def test_style_names_must_be_whole_plain_names(name: str) -> None:
    with pytest.raises(FastNSTError, match="not a plain name"):
        ModelMeta(style_name=name)
    with pytest.raises(FastNSTError, match="not a plain name"):
        ModelMeta(style_name="multi", styles=["ok", name])
    ModelMeta(style_name="Van Gogh 1889.v2+b")  # letters, digits, space and _ . + - are fine
