"""Learned joint bilateral upsampling: starts as the JBU baseline, metres in/out, tiling, gradients,
self-ensemble."""

import pytest
import torch

from densepac.depth.inference import tiled_upsample
from densepac.depth.models.base import flip_ensemble
from densepac.models import create_model, list_models


def test_registered_at_every_scale():
    assert {f"pac_learned_jbu_x{s}" for s in (4, 8, 16)} <= set(list_models("pac_learned_jbu*"))


@pytest.mark.parametrize("scale", [4, 8])
def test_starts_as_joint_bilateral_upsampling(scale):
    """With the learned terms at zero the kernel is the JBU baseline's color x spatial kernel."""
    torch.manual_seed(0)
    # radius 2: the baseline's 5x5 samples.
    # One member: the baseline reads each sample's color off-centre, so it is not flip-equivariant.
    m = create_model(f"pac_learned_jbu_x{scale}", radius=2, depth_weight=0.0, self_ensemble=1).double().eval()
    torch.nn.init.zeros_(m.features.head.weight)
    lr = torch.rand(2, 1, 6, 5, dtype=torch.float64) * 3 + 1
    lr[0, 0, 2, 2] = 0
    # A smooth guide, so the baseline never falls back to bicubic (its weights stay > 1e-8).
    rgb = torch.nn.functional.interpolate(
        torch.rand(2, 3, 3, 3, dtype=torch.float64), size=(6 * scale, 5 * scale), mode="bilinear", align_corners=False
    )
    with torch.no_grad():
        torch.testing.assert_close(m(lr, rgb), create_model("joint_bilateral").double()(lr, rgb))


def test_metres_in_metres_out_and_holes():
    torch.manual_seed(1)
    m = create_model("pac_learned_jbu_x4").double().eval()
    lr = torch.rand(2, 1, 5, 7, dtype=torch.float64) * 2 + 1
    lr[0, 0, 1, 2], lr[1, 0, 3, 3] = 0, float("nan")
    rgb = torch.rand(2, 3, 20, 28, dtype=torch.float64)
    with torch.no_grad():
        out = m(lr, rgb)
        assert out.shape == (2, 1, 20, 28) and torch.isfinite(out).all()
        torch.testing.assert_close(m(lr * 10, rgb), out * 10)
        torch.testing.assert_close(m(torch.where(lr > 0, lr + 5, lr), rgb), out + 5)
    # A convex combination of the measured samples (holes are never used while a sample is near).
    valid = torch.isfinite(lr) & (lr > 0)
    assert out.min() >= lr[valid].min() - 1e-9 and out.max() <= lr[valid].max() + 1e-9


def test_gradients_reach_every_parameter():
    torch.manual_seed(2)
    m = create_model("pac_learned_jbu_x4")
    for p in (m.features.head.weight, m.sample_branch[-1].weight):  # as after some training
        torch.nn.init.normal_(p, std=0.1)
    m(torch.rand(1, 1, 4, 4) + 1, torch.rand(1, 3, 16, 16)).square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("scale", [4, 16])
def test_tiled_equals_untiled(scale):
    torch.manual_seed(3)
    m = create_model(f"pac_learned_jbu_x{scale}").double().eval()
    for p in (m.features.head.weight, m.sample_branch[-1].weight):
        torch.nn.init.normal_(p, std=0.3)  # make the learned features matter
    h, w = (28, 35) if scale < 16 else (20, 23)
    lr = torch.rand(1, 1, h, w, dtype=torch.float64) + 1
    lr[0, 0, 3:7, 20:23] = 0
    rgb = torch.rand(1, 3, h * scale, w * scale, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(tiled_upsample(m, lr, rgb, tile=9, margin=m.tile_margin), m(lr, rgb))


@pytest.mark.parametrize("scale", [2, 6])
def test_scale_not_a_multiple_of_four_refused(scale):
    with pytest.raises(ValueError, match="multiple of 4"):
        create_model("pac_learned_jbu_x4", scale=scale)


def test_refine_head_starts_at_zero_and_learns():
    torch.manual_seed(4)
    lr, rgb = torch.rand(1, 1, 4, 5) + 1, torch.rand(1, 3, 16, 20)
    torch.manual_seed(5)
    plain = create_model("pac_learned_jbu_x4")
    torch.manual_seed(5)
    refined = create_model("pac_learned_jbu_x4", refine=True)
    torch.testing.assert_close(refined(lr, rgb), plain(lr, rgb))
    refined(lr, rgb).sub(2).square().mean().backward()
    assert refined.refine[-1].weight.grad.abs().sum() > 0


def test_flip_ensemble_hand_computed():
    x = torch.tensor([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]])
    # cumsum along the width: [1, 3, 6]; of the mirrored row, mirrored back: [6, 5, 3].
    torch.testing.assert_close(flip_ensemble(lambda t: t.cumsum(-1), x, size=2)[0, 0, 0], torch.tensor([3.5, 4.0, 4.5]))
    # Along the height, the up-down flips matter: rows [1, 2, 3] and [5, 7, 9] either way round.
    up_down = flip_ensemble(lambda t: t.cumsum(-2), x, size=4)
    torch.testing.assert_close(up_down, torch.tensor([[[[3.0, 4.5, 6.0], [4.5, 6.0, 7.5]]]]))
    torch.testing.assert_close(flip_ensemble(lambda t: t.cumsum(-1), x, size=1), x.cumsum(-1))
    with pytest.raises(ValueError, match="must be one of"):
        flip_ensemble(lambda t: t, x, size=3)


def test_self_ensemble_is_the_mean_over_flips_in_eval_only():
    torch.manual_seed(6)
    ensemble = create_model("pac_learned_jbu_x4").double()
    torch.nn.init.normal_(ensemble.features.head.weight, std=0.3)
    single = create_model("pac_learned_jbu_x4", self_ensemble=1).double()
    single.load_state_dict(ensemble.state_dict())
    lr, rgb = torch.rand(1, 1, 5, 6, dtype=torch.float64) + 1, torch.rand(1, 3, 20, 24, dtype=torch.float64)
    with torch.no_grad():
        flips = [(), (-1,), (-2,), (-2, -1)]
        mean = sum(single.eval()(lr.flip(d), rgb.flip(d)).flip(d) for d in flips) / 4
        torch.testing.assert_close(ensemble.eval()(lr, rgb), mean)
        assert (mean - single(lr, rgb)).abs().max() > 1e-4  # the members differ
        torch.testing.assert_close(ensemble.train()(lr, rgb), single.train()(lr, rgb))
    for bad in (3, 1.0, True):  # 1.0 == 1, but would slice no flips
        with pytest.raises(ValueError, match="self_ensemble"):
            create_model("pac_learned_jbu_x4", self_ensemble=bad)
