"""Loss terms are parts: the loss, its spec, the config checks, the painting fitter and `fastnst info` all
follow the set of terms; each term's gradient is autograd's of its formula; the sliced-Wasserstein style term
sees what a Gram cannot."""

import dataclasses

import pytest
import torch

from fastnst.core.errors import FastNSTError
from fastnst.core.losses import PerceptualLoss
from fastnst.core.terms import LossInputs, all_terms, check_spec, loss_keys
from fastnst.core.terms.palette import sliced_distance, sorted_projections, unit_directions
from fastnst.core.vgg import VGGFeatures

LAYERS = ["relu1_1", "relu1_2", "relu2_1", "relu2_2"]


@pytest.fixture(scope="module")
def vgg() -> VGGFeatures:
    return VGGFeatures("vgg16", LAYERS, weights="random", seed=0)


def test_every_term_has_its_own_name_and_keys() -> None:
    names = [t.name for t in all_terms()]
    assert {"content", "style", "tv", "palette", "sliced_style", "temporal"} <= set(names)
    keys = [k for t in all_terms() for k in t.keys]
    assert len(keys) == len(set(keys)) and set(keys) < set(loss_keys())


def test_the_spec_holds_every_key_and_rebuilds_the_same_loss() -> None:
    loss = PerceptualLoss.from_spec(vgg_weights="random", sw_weight=2.0, palette_weight=3.0)
    assert set(loss.spec) == set(loss_keys())
    again = PerceptualLoss.from_spec(**loss.spec)
    assert again.spec == loss.spec


def test_from_spec_takes_keywords_only_and_refuses_unknown_ones() -> None:
    with pytest.raises(TypeError):
        PerceptualLoss.from_spec("vgg16", "random")  # a positional argument could silently shift
    with pytest.raises(FastNSTError, match="unknown loss setting.*styel_weight") as err:
        PerceptualLoss.from_spec(vgg_weights="random", styel_weight=2.0)
    assert err.value.param == "styel_weight"


@pytest.mark.parametrize("bad", [{"style_layers": "relu1_2"}, {"style_layers": {"relu1_2": "x"}},
                                 {"sw_weight": float("nan")}, {"content_norm": 3}, {"vgg_weights": 5},
                                 {"tv_weight": True}, {"sw_layers": {"relu1_1": -1}}])
def test_model_metadata_is_checked_as_each_term_declares(bad: dict) -> None:
    with pytest.raises(FastNSTError):
        check_spec(bad)


def test_the_config_checks_and_the_fitter_follow_the_terms() -> None:
    from fastnst.inference.fitting import fit_loss_keys
    from fastnst.training.config import GATYS_NUMBERS, HYDRA_KEYS, TRAIN_NUMBERS

    weights = [k for k, key in loss_keys().items() if key.kind == "weight"]
    assert all(f"loss.{k}" in TRAIN_NUMBERS and f"loss.{k}" in GATYS_NUMBERS for k in weights)
    assert all(HYDRA_KEYS[k] == f"loss.{k}" for k in loss_keys())
    assert "sw_weight" in fit_loss_keys() and "temporal_weight" not in fit_loss_keys()


def test_terms_at_weight_zero_ask_nothing_of_the_vgg(vgg: VGGFeatures) -> None:
    loss = PerceptualLoss(vgg, {"relu1_2": 1.0}, {"relu1_2": 1.0})
    assert "relu2_1" not in loss._output_layers
    with_sw = PerceptualLoss(vgg, {"relu1_2": 1.0}, {"relu1_2": 1.0}, sw_weight=1.0, sw_layers={"relu2_1": 1.0})
    assert "relu2_1" in with_sw._output_layers


def test_the_sliced_distance_sees_distributions_not_positions() -> None:
    torch.manual_seed(0)
    points = torch.randn(1, 400, 8)
    dirs = unit_directions(8, 32)
    theirs = sorted_projections(points[:, torch.randperm(400)], dirs)
    assert sliced_distance(points, theirs, dirs) < 1e-10
    # Two clusters and their mean have the same first moment; the distance tells them apart.
    clusters = torch.cat([torch.full((1, 200, 8), 1.0), torch.full((1, 200, 8), -1.0)], dim=1)
    assert sliced_distance(torch.zeros(1, 400, 8), sorted_projections(clusters, dirs), dirs) > 0.1


def test_the_sliced_style_term_falls_as_pixels_move_toward_the_painting(vgg: VGGFeatures) -> None:
    torch.manual_seed(1)
    painting = torch.rand(1, 3, 32, 32) * torch.tensor([1.0, 0.8, 0.1]).view(1, 3, 1, 1)
    loss = PerceptualLoss(vgg, {"relu1_2": 1.0}, {}, content_weight=0.0, sw_weight=1.0,
                          sw_layers={"relu1_1": 1.0, "relu2_1": 1.0})
    loss.set_style(painting)
    image = torch.rand(1, 3, 32, 32, requires_grad=True)
    opt = torch.optim.Adam([image], lr=0.05)
    first = None
    for _ in range(30):
        value = loss(image, image.detach())["sliced_style"]
        first = first if first is not None else float(value.detach())
        opt.zero_grad()
        value.backward()
        opt.step()
    assert float(loss(image, image.detach())["sliced_style"]) < 0.5 * first


def test_the_sampled_sliced_style_is_close_to_the_fixed_one_on_average(vgg: VGGFeatures) -> None:
    torch.manual_seed(2)
    loss = PerceptualLoss(vgg, {"relu1_2": 1.0}, {}, sw_weight=1.0, sw_layers={"relu1_2": 1.0})
    loss.set_style(torch.rand(1, 3, 32, 32))
    out = torch.rand(2, 3, 32, 32) * 0.5
    fixed = loss(out, out)["sliced_style"]
    draws = torch.stack([loss(out, out, sample=True)["sliced_style"] for _ in range(100)])
    assert draws.std() > 0  # directions are drawn afresh each training step
    torch.testing.assert_close(draws.mean(), fixed, rtol=0.25, atol=0)


def test_each_painting_judges_its_own_images(vgg: VGGFeatures) -> None:
    red, blue = torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32)
    red[:, 0], blue[:, 2] = 1.0, 1.0
    loss = PerceptualLoss(vgg, {"relu1_2": 1.0}, {}, sw_weight=1.0, sw_layers={"relu1_1": 1.0})
    loss.set_style([red, blue])
    same = loss(torch.cat([red, blue]), torch.cat([red, blue]), style_index=torch.tensor([0, 1]))["sliced_style"]
    swapped = loss(torch.cat([red, blue]), torch.cat([red, blue]), style_index=torch.tensor([1, 0]))["sliced_style"]
    assert same < 0.01 * swapped


# The template for a new term's test (docs/extending.md): its gradient, in double precision, against finite
# differences of its own forward, on small random features: no VGG, no download.
@pytest.mark.parametrize("term", [t for t in all_terms() if t.name not in ("temporal",)], ids=lambda t: t.name)
def test_each_terms_gradient_is_that_of_its_value(term: type) -> None:
    torch.manual_seed(3)
    layers = {"relu1_1": 1.0, "relu2_1": 0.5}
    options = {k: (layers if key.kind == "layers" else key.default) for k, key in term.keys.items()}
    options[next(iter(term.keys))] = 1.0
    if "content_norm" in options:
        options["content_norm"] = "target"
    instance = term(**options).double()
    shapes = {"relu1_1": (1, 4, 6, 6), "relu2_1": (1, 5, 3, 3)}
    style = torch.rand(1, 3, 6, 6, dtype=torch.float64)
    instance.set_style([style], [{k: torch.rand(*s, dtype=torch.float64) for k, s in shapes.items()}])
    features = {k: torch.rand(*s, dtype=torch.float64) for k, s in shapes.items()}
    targets = {k: torch.rand(*s, dtype=torch.float64) for k, s in shapes.items()}
    output = torch.rand(1, 3, 6, 6, dtype=torch.float64)

    def value(out: torch.Tensor, *maps: torch.Tensor) -> torch.Tensor:
        inputs = LossInputs(out, None, dict(zip(shapes, maps, strict=True)), targets, None, None, False)
        return instance(inputs)[term.name]

    assert torch.autograd.gradcheck(value, (output.requires_grad_(), *(f.requires_grad_() for f in
                                                                       features.values())), eps=1e-6, atol=1e-5)


def test_a_term_that_was_not_in_an_old_file_takes_its_default() -> None:
    old = {"vgg": "vgg16", "vgg_weights": "random", "style_weight": 2.0}  # before sw_weight existed
    loss = PerceptualLoss.from_spec(**old)
    assert loss.spec["sw_weight"] == 0 and not loss.terms["sliced_style"].active
    assert dataclasses.is_dataclass(LossInputs)


def test_fastnst_info_names_a_terms_setting_changed_from_its_default() -> None:
    palette = next(t for t in all_terms() if t.name == "palette")
    assert palette.summary({"palette_weight": 50.0}) == "palette 50.0"
    assert palette.summary({"palette_weight": 50.0, "palette_pool": 4.0}) == "palette 50.0 (palette_pool 4.0)"
    assert palette.summary({"palette_weight": 0.0, "palette_pool": 4.0}) is None  # off
