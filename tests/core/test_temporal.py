import torch

from fastnst.core.temporal import (
    consistent_flow_mask,
    flicker_ratio,
    flow_warping_error,
    random_affine,
    synthetic_clip,
    temporal_loss,
    warp,
    warping_error,
)
from fastnst.core.transformer import TransformerNet


def test_identity_warp_changes_nothing() -> None:
    x = torch.rand(2, 3, 16, 20)
    theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(2, 2, 3)
    warped, mask = warp(x, theta)
    torch.testing.assert_close(warped, x)
    assert mask.all()


def test_random_affines_are_small_and_seeded() -> None:
    a = random_affine(4, generator=torch.Generator().manual_seed(1))
    b = random_affine(4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    identity = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    assert (a - identity).abs().max() < 0.1


def test_temporal_loss_is_zero_for_an_equivariant_network() -> None:
    x = torch.rand(2, 3, 32, 32)
    assert temporal_loss(lambda t: t, x) == 0


def test_temporal_loss_is_positive_for_a_random_network() -> None:
    net = TransformerNet(channels=8, num_residual=1)
    loss = temporal_loss(net, torch.rand(2, 3, 32, 32))
    assert loss > 0
    loss.backward()
    assert net.conv1.conv.weight.grad.abs().sum() > 0


def test_warping_error_is_zero_for_a_perfectly_stable_sequence() -> None:
    clip, thetas = synthetic_clip(torch.rand(1, 3, 32, 40), frames=5)
    assert warping_error(lambda t: t, clip, thetas) < 1e-10  # identity: output moves exactly with the input


def test_warping_error_is_positive_for_a_flickering_stylizer() -> None:
    clip, thetas = synthetic_clip(torch.rand(1, 3, 32, 40), frames=5)
    flicker = lambda t: t + 0.1 * torch.randn_like(t)  # noqa: E731
    assert warping_error(flicker, clip, thetas) > 1e-3


def test_flicker_ratio_is_one_when_output_changes_like_the_input() -> None:
    frames = [torch.full((3, 4, 4), v) for v in (0.1, 0.3, 0.2)]
    assert flicker_ratio((f, f) for f in frames) == 1
    assert flicker_ratio((f, 2 * f) for f in frames) == 2


def shifted_clip(frames: int = 4, shift: int = 2) -> tuple[list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]:
    """A still moving ``shift`` px right each frame, with its exact flows: backward (t -> t−1) is −shift."""
    still = torch.rand(3, 24, 40 + frames * shift, generator=torch.Generator().manual_seed(0))
    clip = [still[..., (frames - t) * shift:(frames - t) * shift + 40] for t in range(frames)]
    backward = torch.zeros(2, 24, 40)
    backward[0] = -shift
    return clip, [(backward, -backward)] * (frames - 1)


def test_the_flow_warping_error_is_zero_for_output_that_moves_with_the_picture() -> None:
    clip, flows = shifted_clip()
    torch.testing.assert_close(clip[1][..., 2:], clip[0][..., :-2])  # the picture moved 2 px right
    assert flow_warping_error(clip, flows) < 1e-10
    g = torch.Generator().manual_seed(1)
    flickering = [f + 0.1 * torch.randn(f.shape, generator=g) for f in clip]
    assert flow_warping_error(flickering, flows) > 1e-3


def test_flow_that_the_reverse_flow_does_not_undo_is_left_out() -> None:
    backward = torch.zeros(1, 2, 16, 16)
    backward[:, 0] = -3
    assert consistent_flow_mask(backward, -backward)[..., 3:].all()  # consistent, source inside the frame
    assert not consistent_flow_mask(backward, -backward)[..., :3].any()  # the source lies outside it
    assert not consistent_flow_mask(backward, backward).any()  # the forward flow does not undo the backward
