import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from fastnst.core.errors import FastNSTError
from fastnst.core.modelfile import load_network, read_metadata, save_stylizer
from fastnst.core.transformer import TransformerNet


def test_metadata_and_weights_round_trip(tmp_path: Path) -> None:
    net = TransformerNet(channels=8, num_residual=1)
    path = save_stylizer(net, tmp_path / "m.safetensors", {"style_name": "x", "steps": 7})
    loaded, meta = load_network(path)
    assert meta["style_name"] == "x" and meta["steps"] == 7 and meta["network"] == net.config
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(loaded(x), net.eval()(x))


def test_a_lightning_style_checkpoint_loads(tmp_path: Path) -> None:
    net = TransformerNet(channels=8, num_residual=1)
    ckpt = {"state_dict": {f"network.{k}": v for k, v in net.state_dict().items()},
            "hyper_parameters": {"network": net.config, "style_name": "x"}, "global_step": 5}
    torch.save(ckpt, tmp_path / "m.ckpt")
    _, meta = load_network(tmp_path / "m.ckpt")
    assert meta["steps"] == 5 and meta["style_name"] == "x"


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
    path = save_stylizer(TransformerNet(channels=8, num_residual=1), tmp_path / "m.safetensors", {})
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
        good = save_stylizer(TransformerNet(channels=8, num_residual=1), tmp_path / "g.safetensors", {})
        path.write_bytes(good.read_bytes()[:500])
    with pytest.raises(FastNSTError, match="m.safetensors"):
        read_metadata(path) if case != "truncated" else load_network(path)
