"""One network, several styles (conditional instance norm): training, blending, morphing, a new style
by fine-tuning, export. Small random networks whose style rows differ, 32-64 px images."""

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fastnst.cli.main import main
from fastnst.core.blend import Morph, mix_label, parse_style, style_weights
from fastnst.core.errors import FastNSTError
from fastnst.core.modelfile import ModelMeta, load_network, read_metadata, save_stylizer
from fastnst.core.transformer import TransformerNet
from fastnst.inference.stylizer import StylizeOptions, Stylizer
from fastnst.inference.video import stylize_video
from fastnst.training.run import run

from conftest import compose_train, make_image, tiny_train_overrides
from samples import make_clip, spread_network, tiny_model

NAMES = ["warm", "cold", "grey"]


def multi_network(styles: int = 3, seed: int = 0) -> TransformerNet:
    """A small multi-style network whose styles' (γ, β) differ strongly, so they paint differently."""
    return spread_network(styles, spread=0.8, seed=seed)


@pytest.fixture
def multi_model(tmp_path: Path) -> Path:
    return save_stylizer(multi_network(), tmp_path / "multi.safetensors", ModelMeta(style_name="multi", styles=NAMES))


@pytest.fixture
def single_model(tmp_path: Path) -> Path:
    return tiny_model(tmp_path / "single.safetensors", "one", seed=0)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


# --- the network ---------------------------------------------------------------------------------

def test_each_style_is_its_own_row_of_every_norm_layer() -> None:
    net, x = multi_network(), torch.rand(2, 3, 32, 40)
    for k in range(3):
        single = TransformerNet(channels=8, num_residual=1)
        state = {key: (v[k] if v.dim() == 2 else v) for key, v in net.state_dict().items()}
        single.load_state_dict(state)
        torch.testing.assert_close(net(x, torch.eye(3)[k]), single.eval()(x))
    assert not torch.allclose(net(x, torch.eye(3)[0]), net(x, torch.eye(3)[1]), atol=1e-3)
    torch.testing.assert_close(net(x), net(x, torch.eye(3)[0]))  # the default is the first style


def test_a_blend_mixes_gamma_and_beta_not_images() -> None:
    net, x, w = multi_network(), torch.rand(1, 3, 32, 32), torch.tensor([0.25, 0.75, 0.0])
    mixed = TransformerNet(channels=8, num_residual=1)
    mixed.load_state_dict({key: (w @ v if v.dim() == 2 else v) for key, v in net.state_dict().items()})
    torch.testing.assert_close(net(x, w), mixed.eval()(x))
    image_mix = 0.25 * net(x, torch.eye(3)[0]) + 0.75 * net(x, torch.eye(3)[1])
    assert not torch.allclose(net(x, w), image_mix, atol=1e-3)


def test_per_image_styles_in_one_batch() -> None:
    net, x = multi_network(), torch.rand(3, 3, 32, 32)
    y = net(x, torch.eye(3))
    for k in range(3):
        torch.testing.assert_close(y[k:k + 1], net(x[k:k + 1], torch.eye(3)[k]))


def test_a_style_costs_a_few_thousand_parameters_not_a_network() -> None:
    one, four = (sum(p.numel() for p in TransformerNet(32, 5, num_styles=s).parameters()) for s in (1, 4))
    per_style = (four - one) / 3
    assert per_style == 2 * (32 + 64 + 128 + 10 * 128 + 64 + 32)  # (γ, β) of every norm layer
    assert per_style < 0.01 * one


def test_single_style_networks_keep_their_state_dict() -> None:
    keys = {k: tuple(v.shape) for k, v in TransformerNet(8, 1).state_dict().items()}
    assert keys["in1.weight"] == (8,) and "num_styles" not in TransformerNet(8, 1).config
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        multi_network()(torch.rand(1, 3, 16, 16), torch.ones(2))


# --- choosing a style ----------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "expected"), [
    (None, [1, 0, 0]), ("cold", [0, 1, 0]), ("warm:0.7,cold:0.3", [0.7, 0.3, 0]),
    ("warm:3, grey:1", [0.75, 0, 0.25]), ({"cold": 2, "grey": 2}, [0, 0.5, 0.5]),
])
def test_style_specs_become_normalised_weights(spec: object, expected: list[float]) -> None:
    torch.testing.assert_close(style_weights(spec, NAMES), torch.tensor(expected, dtype=torch.float32))


@pytest.mark.parametrize(("spec", "message"), [
    ("blue", "unknown style 'blue'; this model has: warm, cold, grey"),
    ("warm:abc", "cannot read the weight 'abc'"),
    ("warm:-1,cold:2", "must be a finite number >= 0"),
    ("warm:0,cold:0", "must not all be zero"),
    ("warm:nan", "finite number"),
    (",", "expected NAME or NAME:WEIGHT"),
    ("warm..", "expected FROM..TO"),
])
def test_bad_style_specs_are_one_clear_error(spec: str, message: str) -> None:
    with pytest.raises(FastNSTError, match=message.replace("(", r"\(")):
        parse_style(spec, NAMES)


def test_a_morph_runs_from_one_mix_to_another() -> None:
    morph = parse_style("warm..cold:0.5,grey:0.5", NAMES)
    assert isinstance(morph, Morph)
    torch.testing.assert_close(morph.at(0), torch.tensor([1.0, 0, 0]))
    torch.testing.assert_close(morph.at(0.5), torch.tensor([0.5, 0.25, 0.25]))
    torch.testing.assert_close(morph.at(1), torch.tensor([0.0, 0.5, 0.5]))
    assert mix_label(morph.at(0.5), NAMES) == "warm50+cold25+grey25"


# --- stylizing -----------------------------------------------------------------------------------

def test_each_style_and_a_blend_stylize_differently(multi_model: Path, tmp_path: Path) -> None:
    stylizer = Stylizer.from_file(multi_model, device="cpu")
    photo = Image.open(make_image(tmp_path / "p.png", (48, 40)))
    outs = {s: pixels(stylizer.stylize(photo, style=s)) for s in ("warm", "cold", "warm:0.5,cold:0.5")}
    assert all(o.shape == (40, 48, 3) for o in outs.values())
    assert np.abs(outs["warm"] - outs["cold"]).mean() > 5
    blend = outs["warm:0.5,cold:0.5"]
    assert np.abs(blend - outs["warm"]).mean() > 1 and np.abs(blend - outs["cold"]).mean() > 1
    np.testing.assert_array_equal(pixels(stylizer.stylize(photo)), outs["warm"])  # default: first style


def test_strength_and_preserve_color_work_with_a_style(multi_model: Path, tmp_path: Path) -> None:
    stylizer = Stylizer.from_file(multi_model, device="cpu")
    photo = Image.open(make_image(tmp_path / "p.png", (40, 40)))
    np.testing.assert_array_equal(pixels(stylizer.stylize(photo, style="cold", strength=0)), pixels(photo))
    full, half = (pixels(stylizer.stylize(photo, style="cold", strength=s)) for s in (1.0, 0.5))
    assert 0 < np.abs(half - pixels(photo)).mean() < np.abs(full - pixels(photo)).mean()
    kept = pixels(stylizer.stylize(photo, style="cold", preserve_color=True))
    assert np.abs(kept - full).mean() > 1


def test_tiles_share_the_norm_statistics_of_the_chosen_style(multi_model: Path) -> None:
    # fp32 stated: the tolerances below are for tiling alone, not bf16's rounding (auto is bf16 on such CPUs).
    stylizer = Stylizer.from_file(multi_model, device="cpu", precision="fp32")
    x = torch.rand(1, 3, 80, 96)
    whole = stylizer.stylize_tensor(x, StylizeOptions(style="grey:0.4,cold:0.6", tile=0))
    tiled = stylizer.stylize_tensor(x, StylizeOptions(style="grey:0.4,cold:0.6", tile=48, overlap=16))
    # As for single-style models (test_stylize.py): measured mean 4e-4, max 0.014.
    diff = (whole - tiled).abs()
    assert diff.mean() < 2e-3 and diff.max() < 0.05
    other = stylizer.stylize_tensor(x, StylizeOptions(style="warm", tile=0))
    assert (whole - other).abs().mean() > 20 * diff.mean()


def test_video_morph_moves_from_the_first_style_to_the_last(multi_model: Path, tmp_path: Path) -> None:
    stylizer = Stylizer.from_file(multi_model, device="cpu")
    clip = make_clip(tmp_path / "c.mp4", frames=10)
    out = tmp_path / "out.mp4"
    stylize_video(stylizer, clip, out, StylizeOptions(style="warm..cold"), progress=False)
    with av.open(str(clip)) as f:
        inputs = [torch.from_numpy(fr.to_ndarray(format="rgb24")).permute(2, 0, 1)[None].float() / 255
                  for fr in f.decode(video=0)]
    with av.open(str(out)) as f:
        got = [torch.from_numpy(fr.to_ndarray(format="rgb24")).permute(2, 0, 1).float() / 255
               for fr in f.decode(video=0)]
    assert len(got) == len(inputs) == 10

    def dist(i: int, style: str) -> float:
        return float((got[i] - stylizer.stylize_tensor(inputs[i], StylizeOptions(style=style))[0]).abs().mean())

    assert dist(0, "warm") < 0.03 < dist(0, "cold")
    assert dist(9, "cold") < 0.03 < dist(9, "warm")
    assert dist(5, "warm:4,cold:5") < 0.03  # frame 5 of 10: 5/9 of the way


# --- the command line ----------------------------------------------------------------------------

def test_cli_style_and_blend_name_their_outputs(multi_model: Path, tmp_path: Path) -> None:
    photo = make_image(tmp_path / "p.png")
    assert main(["stylize", str(photo), "-m", str(multi_model), "--style", "cold"]) == 0
    assert main(["stylize", str(photo), "-m", str(multi_model), "--style", "warm:0.7,cold:0.3"]) == 0
    assert main(["stylize", str(photo), "-m", str(multi_model)]) == 0
    assert {p.name for p in tmp_path.glob("p_*.png")} == {"p_cold.png", "p_warm70+cold30.png", "p_warm.png"}


@pytest.mark.parametrize(("args", "message"), [
    (["--style", "blue"], "unknown style 'blue'; this model has: warm, cold, grey (--style)"),
    (["--style", "warm:x"], "cannot read the weight 'x' of style 'warm'"),
    (["--style", "warm:-1"], "must be a finite number >= 0"),
    (["--style", "warm:0,cold:0"], "style weights must not all be zero"),
    (["--style", "warm..cold"], "a morph (warm..cold) moves over a video's frames"),
])
def test_bad_styles_on_the_cli_are_one_line(multi_model: Path, tmp_path: Path, capsys, args: list[str],
                                            message: str) -> None:
    photo = make_image(tmp_path / "p.png")
    assert main(["stylize", str(photo), "-m", str(multi_model), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("p_*"))


def test_style_on_a_single_style_model_is_one_line(single_model: Path, tmp_path: Path, capsys) -> None:
    photo = make_image(tmp_path / "p.png")
    assert main(["stylize", str(photo), "-m", str(single_model), "--style", "one"]) == 2
    assert "this model paints one style (one)" in capsys.readouterr().err


def test_info_lists_the_styles(multi_model: Path, capsys) -> None:
    assert main(["info", str(multi_model)]) == 0
    assert "3: warm, cold, grey" in capsys.readouterr().out


def test_onnx_export_takes_the_style_weights_as_an_input(multi_model: Path, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from fastnst.inference.export import export

    path = export(multi_model, "onnx", tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path))
    assert [i.name for i in session.get_inputs()] == ["image", "style"]
    net, _ = load_network(multi_model)
    x, w = torch.rand(2, 3, 36, 44), torch.tensor([0.2, 0.0, 0.8])
    (y,) = session.run(None, {"image": x.numpy(), "style": w.numpy()})
    np.testing.assert_allclose(y, net(x, w).detach().numpy(), atol=1e-4)


def test_model_files_refuse_style_names_that_do_not_fit(tmp_path: Path) -> None:
    with pytest.raises(FastNSTError, match="2 style name"):
        save_stylizer(multi_network(), tmp_path / "m.safetensors", ModelMeta(styles=["a", "b"]))
    with pytest.raises(FastNSTError, match="repeat"):
        ModelMeta(styles=["a", "a"])
    with pytest.raises(FastNSTError, match="not a plain name"):
        ModelMeta(styles=["../x", "b"])
    with pytest.raises(FastNSTError, match="default style 'c' is not one of"):
        ModelMeta(styles=["a", "b"], default_style="c")


# --- training ------------------------------------------------------------------------------------

def two_styles(tmp_path: Path) -> tuple[Path, Path]:
    return make_image(tmp_path / "red.png", (40, 40), seed=1), make_image(tmp_path / "blue.png", (40, 40), seed=2)


def test_a_two_style_run_trains_both_and_logs_each(tmp_path: Path) -> None:
    red, blue = two_styles(tmp_path)
    cfg = compose_train([*tiny_train_overrides(red, steps=4), f"styles=[{red},{blue}]"], tmp_path / "run")
    path = run(cfg)
    assert path is not None and path.name == "multi2.safetensors"
    net, meta = load_network(path)
    assert meta.styles == ["red", "blue"] and net.num_styles == 2
    assert not torch.equal(net.in1.weight[0], net.in1.weight[1])  # each style's row trained on its own
    events = next((tmp_path / "run").rglob("events.out.tfevents*"))
    acc = EventAccumulator(str(events))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"val/red/style", "val/blue/style", "val/red/content", "val/total"} <= tags
    assert "samples" in acc.Tags()["images"]


def test_training_deals_images_to_the_styles_in_turn(tmp_path: Path) -> None:
    from fastnst.core.losses import PerceptualLoss
    from fastnst.training.module import StyleTransferModule

    loss = PerceptualLoss.from_spec(vgg_weights="random")
    module = StyleTransferModule(multi_network(), loss, torch.optim.Adam, [torch.rand(1, 3, 32, 32)] * 3,
                                 style_names=NAMES)

    class Trainer:
        world_size, global_rank, global_step = 2, 1, 3
    module.__dict__["_trainer"] = Trainer()
    counts = torch.zeros(3)
    for step in range(6):
        for rank in range(2):
            Trainer.global_step, Trainer.global_rank = step, rank
            counts += torch.bincount(module._training_styles(torch.zeros(4, 3, 8, 8)), minlength=3)
    assert counts.tolist() == [16, 16, 16]


def test_a_new_style_trains_only_its_own_gamma_and_beta(tmp_path: Path) -> None:
    red, blue = two_styles(tmp_path)
    base = run(compose_train([*tiny_train_overrides(red, steps=2), f"styles=[{red},{blue}]"], tmp_path / "a"))
    green = make_image(tmp_path / "green.png", (40, 40), seed=3)
    cfg = compose_train([*tiny_train_overrides(green, steps=3), "style.name=green", f"init_from={base}"],
                        tmp_path / "b")
    path = run(cfg)
    before, _ = load_network(base)
    after, meta = load_network(path)
    assert meta.styles == ["red", "blue", "green"] and meta.style_name == "multi2+green"
    assert "green added to multi2.safetensors" in meta.description and meta.steps == 3
    for key, value in before.state_dict().items():
        grown = after.state_dict()[key]
        if value.shape == grown.shape:
            assert torch.equal(value, grown), key  # shared weights untouched
        else:
            assert torch.equal(value, grown[:2]), key  # the old styles untouched
            assert not torch.equal(grown[2], value.mean(dim=0)), key  # the new one learned


def test_adding_a_style_the_model_has_is_refused(tmp_path: Path, single_model: Path) -> None:
    red, _ = two_styles(tmp_path)
    cfg = compose_train([*tiny_train_overrides(red, steps=2), "style.name=one", f"init_from={single_model}"],
                        tmp_path / "r")
    with pytest.raises(FastNSTError, match="already has style"):
        run(cfg)


def test_an_unknown_style_in_styles_is_a_clear_error(tmp_path: Path) -> None:
    red, _ = two_styles(tmp_path)
    cfg = compose_train([*tiny_train_overrides(red, steps=2), "styles=[starry_night,nonesuch]"], tmp_path / "r")
    with pytest.raises(FastNSTError, match="unknown style 'nonesuch'"):
        run(cfg)


def test_a_multi_style_model_from_training_reads_back_its_metadata(tmp_path: Path) -> None:
    red, blue = two_styles(tmp_path)
    path = run(compose_train([*tiny_train_overrides(red, steps=2), f"styles=[{red},{blue}]", "name=pair"],
                             tmp_path / "r"))
    assert path is not None and path.name == "pair.safetensors"
    assert read_metadata(path).style_names == ["red", "blue"]
