import pytest
import torch

from fastnst.core.losses import PerceptualLoss, gram_matrix, sliced_palette, total_variation
from fastnst.core.vgg import VGGFeatures

STYLE_LAYERS = {"relu1_2": 1.0, "relu2_2": 0.5, "relu3_3": 1.0}


@pytest.fixture(scope="module")
def vgg() -> VGGFeatures:
    # Random (seeded) weights: no download; enough to test the arithmetic, not the look.
    return VGGFeatures("vgg16", ["relu2_2", *STYLE_LAYERS], weights="random", seed=0)


def make_loss(vgg: VGGFeatures, **kw: float) -> PerceptualLoss:
    return PerceptualLoss(vgg, {"relu2_2": 1.0}, STYLE_LAYERS, **{"style_weight": 10.0, "tv_weight": 0.1, **kw})


def test_gram_matches_the_direct_formula() -> None:
    f = torch.randn(2, 3, 4, 5)
    expected = torch.empty(2, 3, 3)
    for n in range(2):
        for i in range(3):
            for j in range(3):
                expected[n, i, j] = (f[n, i] * f[n, j]).sum() / (3 * 4 * 5)
    torch.testing.assert_close(gram_matrix(f), expected)


def test_total_variation_is_zero_for_a_flat_image_and_positive_for_noise() -> None:
    assert total_variation(torch.full((1, 3, 8, 8), 0.3)) == 0
    assert total_variation(torch.rand(1, 3, 8, 8)) > 0


def test_identical_images_give_zero_content_and_style_loss(vgg: VGGFeatures) -> None:
    loss = make_loss(vgg)
    x = torch.rand(1, 3, 32, 32)
    loss.set_style(x)
    terms = loss(x, x)
    assert terms["content"] == 0 and terms["style"] == 0
    assert terms["total"] == terms["tv"] > 0


def test_different_images_give_positive_losses(vgg: VGGFeatures) -> None:
    loss = make_loss(vgg)
    loss.set_style(torch.rand(1, 3, 40, 24))
    terms = loss(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
    assert terms["content"] > 0 and terms["style"] > 0
    assert set(terms) >= {"total", "content", "style", "tv", *(f"style/{n}" for n in STYLE_LAYERS)}
    torch.testing.assert_close(terms["style"], sum(terms[f"style/{n}"] for n in STYLE_LAYERS))


def test_style_targets_stay_out_of_the_state_dict(vgg: VGGFeatures) -> None:
    loss = make_loss(vgg)
    loss.set_style(torch.rand(1, 3, 32, 32))
    assert loss.style_gram("relu1_2") is not None
    assert not any("gram" in k for k in loss.state_dict())


def test_style_grams_are_computed_once_not_per_batch_item(vgg: VGGFeatures) -> None:
    loss = make_loss(vgg)
    loss.set_style(torch.rand(1, 3, 32, 32))
    assert loss.style_gram("relu1_2").shape[0] == 1  # broadcast over the batch, never repeated


def test_content_targets_stop_at_the_deepest_content_layer(vgg: VGGFeatures) -> None:
    calls = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1)) for m in vgg.features]
    make_loss(vgg).content_targets(torch.rand(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert len(calls) == vgg.names.index("relu2_2") + 1 < len(vgg.features)


def test_loss_is_differentiable_with_respect_to_the_output(vgg: VGGFeatures) -> None:
    loss = make_loss(vgg)
    loss.set_style(torch.rand(1, 3, 32, 32))
    out = torch.rand(1, 3, 32, 32, requires_grad=True)
    loss(out, torch.rand(1, 3, 32, 32))["total"].backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())


def test_target_norm_makes_each_layer_a_relative_error(vgg: VGGFeatures) -> None:
    torch.manual_seed(3)
    style, out, content = torch.rand(1, 3, 40, 40), torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    loss = make_loss(vgg, style_norm="target")
    loss.set_style(style)
    terms = loss(out, content)
    feats_out, feats_style = vgg(out, STYLE_LAYERS), vgg(style, STYLE_LAYERS)
    for name, w in STYLE_LAYERS.items():
        target = gram_matrix(feats_style[name])
        err = (gram_matrix(feats_out[name]) - target).pow(2).mean() / target.pow(2).mean()
        torch.testing.assert_close(terms[f"style/{name}"], 10.0 * w * err)
    # A plain MSE on the same inputs is dominated by the layer with the largest Grams; the relative one is not.
    plain = make_loss(vgg)
    plain.set_style(style)
    raw = plain(out, content)
    assert not torch.allclose(raw["style"], terms["style"])


def test_content_target_norm_is_a_relative_error_whatever_the_feature_scale(vgg: VGGFeatures) -> None:
    torch.manual_seed(4)
    out, content = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    loss = make_loss(vgg, content_norm="target")
    loss.set_style(torch.rand(1, 3, 32, 32))
    f_out, f_content = vgg(out, ["relu2_2"])["relu2_2"], vgg(content, ["relu2_2"])["relu2_2"]
    expected = (f_out - f_content).pow(2).mean() / f_content.pow(2).mean()
    torch.testing.assert_close(loss(out, content)["content"], expected)
    # A VGG whose relu2_2 features are exactly 10x larger (conv2_2 scaled: ReLU is positively homogeneous)
    # gives the same relative content error, and 100x the plain one.
    scaled = VGGFeatures("vgg16", ["relu2_2"], weights="random", seed=0)
    with torch.no_grad():
        conv2_2 = scaled.features[scaled.names.index("conv2_2")]
        conv2_2.weight.mul_(10)
        conv2_2.bias.mul_(10)
    torch.testing.assert_close(scaled(content, ["relu2_2"])["relu2_2"], 10 * f_content, rtol=1e-5, atol=1e-4)
    relative = PerceptualLoss(scaled, {"relu2_2": 1.0}, {}, content_norm="target")
    torch.testing.assert_close(relative(out, content)["content"], expected)
    raw = PerceptualLoss(scaled, {"relu2_2": 1.0}, {})
    torch.testing.assert_close(raw(out, content)["content"], 100 * (f_out - f_content).pow(2).mean())
    plain = make_loss(vgg)
    plain.set_style(torch.rand(1, 3, 32, 32))
    assert not torch.allclose(plain(out, content)["content"], expected)


def test_the_palette_distance_sees_colours_a_gram_cannot() -> None:
    torch.manual_seed(5)
    dirs = torch.randn(3, 64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pixels = torch.rand(1, 500, 3)
    shuffled = pixels[:, torch.randperm(500)]
    assert sliced_palette(pixels, shuffled, dirs) == 0  # where the colours are does not matter, which do
    # Half yellow, half blue against their mean (a green-grey): far apart, though the means agree.
    yellow, blue = torch.tensor([[0.9, 0.8, 0.1]]), torch.tensor([[0.1, 0.2, 0.8]])
    yellow_blue = torch.cat([yellow.expand(250, 3), blue.expand(250, 3)])
    mean = yellow_blue.mean(0, keepdim=True).expand(500, 3)
    assert sliced_palette(mean[None], yellow_blue[None], dirs) > 0.05
    # Any numbers of pixels compare (quantiles), and the distance is symmetric in the limit.
    fewer = yellow_blue[::5][None]
    assert sliced_palette(yellow_blue[None], fewer, dirs) < 1e-3


def test_the_sampled_palette_term_is_the_full_one_on_average(vgg: VGGFeatures) -> None:
    # Training judges the palette on random directions each step: on average the same objective.
    torch.manual_seed(0)
    loss = PerceptualLoss(vgg, {"relu2_2": 1.0}, STYLE_LAYERS, palette_weight=1.0)
    loss.set_style(torch.rand(1, 3, 32, 32) * torch.tensor([1.0, 0.6, 0.2]).view(1, 3, 1, 1))
    out = torch.rand(2, 3, 32, 32)
    full = loss(out, out)["palette"]
    draws = torch.stack([loss(out, out, sample=True)["palette"] for _ in range(300)])
    assert draws.std() > 0.01 * full  # each step sees a different subset...
    torch.testing.assert_close(draws.mean(), full, rtol=0.03, atol=0)  # ...and the mean is the full term


def test_the_palette_term_pulls_each_image_to_its_own_painting(vgg: VGGFeatures) -> None:
    red, blue = torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32)
    red[:, 0], blue[:, 2] = 1.0, 1.0
    loss = PerceptualLoss(vgg, {"relu2_2": 1.0}, STYLE_LAYERS, palette_weight=3.0)
    loss.set_style([red, blue])
    out = torch.cat([red, red])
    terms = loss(out, out, style_index=torch.tensor([0, 1]))
    # image 0 is judged against red (distance 0), image 1 against blue: the mean of 0 and its distance
    alone = loss(red, red, style_index=torch.tensor([1]))["palette"]
    torch.testing.assert_close(terms["palette"], alone / 2)
    assert alone > 0 and loss.spec["palette_weight"] == 3.0
    torch.testing.assert_close(terms["total"], terms["content"] + terms["style"] + terms["tv"] + terms["palette"])
    plain = make_loss(vgg)
    plain.set_style(red)
    assert "palette" not in plain(out, out) and plain.spec["palette_weight"] == 0


def test_the_temporal_term_is_part_of_the_loss(vgg: VGGFeatures) -> None:
    from fastnst.core.transformer import TransformerNet

    net = TransformerNet(channels=8, num_residual=1)
    x = torch.rand(2, 3, 32, 32)
    loss = make_loss(vgg, temporal_weight=5.0)
    loss.set_style(torch.rand(1, 3, 32, 32))
    terms = loss(net(x), x, network=net)
    assert terms["temporal"] > 0
    torch.testing.assert_close(terms["total"], terms["content"] + terms["style"] + terms["tv"] + terms["temporal"])
    with pytest.raises(ValueError, match="needs the network"):
        loss(net(x), x)


@pytest.mark.parametrize("bad", [{"style_weight": float("nan")}, {"tv_weight": -1.0}, {"style_norm": "max"},
                                 {"content_norm": "max"}])
def test_bad_weights_are_refused(vgg: VGGFeatures, bad: dict) -> None:
    from fastnst.core.errors import FastNSTError

    with pytest.raises(FastNSTError):
        make_loss(vgg, **bad)
