"""Classical baselines: shapes, hole handling, and joint bilateral against a direct loop."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from densepac.models import create_model


def _step_scene(h=8, w=12, s=4):
    yy, xx = torch.meshgrid(torch.arange(h * s), torch.arange(w * s), indexing="ij")
    depth = (2.0 + (xx >= w * s // 2) * 1.5).double()[None, None]
    rgb = torch.stack([(xx >= w * s // 2).double() * 0.8 + 0.1, 0.3 + 0 * xx, 0.5 + 0 * xx])[None].double()
    lr = F.avg_pool2d(depth, s)
    return lr, rgb, depth


@pytest.mark.parametrize("name", ["bicubic", "guided_filter", "joint_bilateral"])
def test_shapes_constant_and_holes(name, dtype):
    m = create_model(name)
    lr = torch.full((2, 1, 6, 5), 3.0, dtype=dtype)
    lr[0, 0, 2, 2] = 0
    lr[1, 0, 0, 0] = float("nan")
    out = m(lr, torch.rand(2, 3, 24, 20, dtype=dtype))
    assert out.shape == (2, 1, 24, 20) and out.dtype == dtype
    # The guided filter's local variances (E[x^2] - E[x]^2) cost a few float32 ulps of 9.
    atol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(out, torch.full_like(out, 3.0), atol=atol, rtol=0)


@pytest.mark.parametrize("name", ["guided_filter", "joint_bilateral"])
def test_guided_baselines_beat_bicubic_at_an_edge(name):
    lr, rgb, depth = _step_scene()
    rmse = lambda m: (m(lr, rgb) - depth).pow(2).mean().sqrt().item()
    assert rmse(create_model(name)) < 0.7 * rmse(create_model("bicubic"))


def test_bicubic_matches_interpolate_on_smooth_input():
    lr = torch.linspace(1, 2, 48).view(1, 1, 6, 8).double()
    out = create_model("bicubic")(lr, torch.zeros(1, 3, 24, 32).double())
    ref = F.interpolate(lr, size=(24, 32), mode="bicubic", align_corners=False).clamp(lr.min(), lr.max())
    torch.testing.assert_close(out, ref)


def test_joint_bilateral_matches_direct_formula():
    torch.manual_seed(0)
    s, sig_s, sig_c, r = 2, 1.0, 0.2, 1
    lr = torch.rand(1, 1, 3, 4, dtype=torch.float64) + 1
    lr[0, 0, 1, 1] = 0  # a hole: never a sample
    rgb = torch.rand(1, 3, 6, 8, dtype=torch.float64)
    out = create_model("joint_bilateral", sigma_spatial=sig_s, sigma_color=sig_c, radius=r)(lr, rgb)
    ref = torch.zeros(6, 8, dtype=torch.float64)
    for y, x in itertools.product(range(6), range(8)):
        num = den = 0.0
        for i, j in itertools.product(range(3), range(4)):
            if lr[0, 0, i, j] <= 0 or abs((y + 0.5) / s - 0.5 - i) > r + 0.5 or abs((x + 0.5) / s - 0.5 - j) > r + 0.5:
                continue
            cy, cx = (i + 0.5) * s - 0.5, (j + 0.5) * s - 0.5  # sample centre in HR pixels
            gy, gx = i * s + s // 2 - 1 + (s % 2), j * s + s // 2 - 1 + (s % 2)  # its guide pixel
            ws = math.exp(-0.5 * ((y - cy) ** 2 + (x - cx) ** 2) / (sig_s * s) ** 2)
            wc = math.exp(-0.5 * ((rgb[0, :, y, x] - rgb[0, :, gy, gx]) ** 2).sum().item() / sig_c**2)
            num += ws * wc * lr[0, 0, i, j].item()
            den += ws * wc
        ref[y, x] = num / den
    torch.testing.assert_close(out[0, 0], ref)


def test_joint_bilateral_falls_back_to_bicubic_where_no_sample_reaches():
    torch.manual_seed(0)
    lr = torch.rand(1, 1, 9, 9, dtype=torch.float64) + 1
    lr[..., 2:7, 2:7] = 0  # a hole wider than the window: its centre cell sees no sample at radius 1
    rgb = torch.rand(1, 3, 36, 36, dtype=torch.float64)
    out = create_model("joint_bilateral", radius=1)(lr, rgb)
    bicubic = create_model("bicubic")(lr, rgb)
    torch.testing.assert_close(out[..., 16:20, 16:20], bicubic[..., 16:20, 16:20])
    assert not torch.allclose(out[..., 8:12, 16:20], bicubic[..., 8:12, 16:20])  # reached: JBU proper


@pytest.mark.parametrize("name", ["bicubic", "guided_filter", "joint_bilateral"])
def test_bad_shapes_refused(name):
    m = create_model(name)
    with pytest.raises(ValueError, match="integer multiple"):
        m(torch.ones(1, 1, 4, 4), torch.rand(1, 3, 10, 16))
    with pytest.raises(ValueError, match="RGB"):
        m(torch.ones(1, 1, 4, 4), torch.rand(1, 1, 16, 16))


def test_gradients_flow_through_baselines():
    lr = (torch.rand(1, 1, 4, 4, dtype=torch.float64) + 1).requires_grad_()
    rgb = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    for name in ("bicubic", "guided_filter", "joint_bilateral"):
        create_model(name)(lr, rgb).sum().backward()
        assert torch.isfinite(lr.grad).all() and lr.grad.abs().sum() > 0
        lr.grad = None


@pytest.mark.parametrize("sampling", ["point", "area"])
def test_graph_sr_is_the_refinement_of_bicubic(sampling):
    from densepac.depth.degrade import simulate_lr
    from densepac.depth.synthetic import make_rgbd_scene
    from densepac.ops import graph_refine

    scene = make_rgbd_scene(6, 48, 64)
    lr = torch.from_numpy(simulate_lr(scene["depth"], 4, sampling))[None, None]
    rgb = torch.from_numpy(scene["rgb"]).permute(2, 0, 1)[None]
    start = create_model("bicubic")(lr, rgb)
    out = create_model("graph_sr")(lr, rgb, sampling=sampling)
    torch.testing.assert_close(out, graph_refine(start, lr, rgb, sampling))
    assert create_model("graph_sr", sampling=sampling)(lr, rgb).equal(out)  # the model's own default
    gt = torch.from_numpy(scene["depth"])[None, None]
    assert (out - gt).pow(2).mean() < (start - gt).pow(2).mean()
