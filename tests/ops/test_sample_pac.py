import math

import pytest
import torch

from densepac.ops.guided import joint_bilateral_upsample
from densepac.ops.sample_pac import at_samples, gaussian_spatial_logits, lr_neighbours, sample_pac_upsample


def _reference(values, f, g, spatial, valid, radius):
    """Direct loop over pixels and neighbours of the formula in the module docstring."""
    n, cv, h, w = values.shape
    s = f.shape[-1] // w
    out = torch.zeros(n, cv, h * s, w * s, dtype=values.dtype)
    k = 2 * radius + 1
    for b in range(n):
        for y in range(h * s):
            for x in range(w * s):
                cy, cx = y // s, x // s
                weights, vals, any_valid = [], [], False
                for t in range(k * k):
                    jy, jx = cy + t // k - radius, cx + t % k - radius
                    inside = 0 <= jy < h and 0 <= jx < w
                    qy, qx = min(max(jy, 0), h - 1), min(max(jx, 0), w - 1)
                    ok = inside and (valid is None or bool(valid[b, 0, qy, qx]))
                    any_valid |= ok
                    logit = spatial[t, y % s, x % s] - 0.5 * ((f[b, :, y, x] - g[b, :, qy, qx]) ** 2).sum()
                    weights.append((logit, ok))
                    vals.append(values[b, :, qy, qx])
                # Every neighbour missing: the op mixes them all (each penalised alike).
                logits = torch.stack([lg for lg, ok in weights if ok or not any_valid])
                vs = torch.stack([v for v, (_, ok) in zip(vals, weights) if ok or not any_valid])
                out[b, :, y, x] = (torch.softmax(logits, 0)[:, None] * vs).sum(0)
    return out


def test_matches_a_direct_loop():
    torch.manual_seed(0)
    s, r = 3, 1
    values = torch.rand(2, 2, 4, 5, dtype=torch.float64)
    f = torch.randn(2, 3, 12, 15, dtype=torch.float64)
    g = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    spatial = torch.randn(9, s, s, dtype=torch.float64)
    valid = torch.rand(2, 1, 4, 5) > 0.3
    for v in (valid, None):
        out = sample_pac_upsample(values, f, g, spatial, v, r)
        torch.testing.assert_close(out, _reference(values, f, g, spatial, v, r))


def test_equals_joint_bilateral_upsampling():
    """Color features at the transposed PAC's sample positions + gaussian filter = the JBU baseline."""
    torch.manual_seed(1)
    s, h, w, sc = 4, 6, 7, 0.5
    depth = torch.rand(1, 1, h, w, dtype=torch.float64) + 1
    valid = torch.rand(1, 1, h, w) > 0.2
    guide = torch.rand(1, 3, h * s, w * s, dtype=torch.float64)
    lo, hi = depth.min().view(1, 1, 1, 1), depth.max().view(1, 1, 1, 1)
    ref = joint_bilateral_upsample(depth, valid, depth, guide, lo, hi, s, float(s), sc)
    out = sample_pac_upsample(
        depth, guide / sc, at_samples(guide, s) / sc, gaussian_spatial_logits(s, 2, float(s), torch.float64), valid, 2
    )
    torch.testing.assert_close(out, ref)


def test_gradcheck():
    torch.manual_seed(2)
    args = (
        torch.rand(1, 1, 3, 3, dtype=torch.float64, requires_grad=True),
        torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True),
        torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True),
        torch.randn(9, 2, 2, dtype=torch.float64, requires_grad=True),
    )
    valid = torch.tensor([[[[1, 0, 1], [1, 1, 1], [0, 1, 1]]]], dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda *a: sample_pac_upsample(*a, valid, 1), args)


def test_convex_combination_of_valid_neighbours(device, dtype):
    torch.manual_seed(3)
    values = torch.rand(2, 1, 8, 8, dtype=dtype, device=device)
    valid = torch.rand(2, 1, 8, 8, device=device) > 0.5
    values[~valid] = 100.0  # a missing sample must never leak in
    out = sample_pac_upsample(
        values,
        torch.randn(2, 4, 32, 32, dtype=dtype, device=device),
        torch.randn(2, 4, 8, 8, dtype=dtype, device=device),
        gaussian_spatial_logits(4, 2, 4.0, dtype, device),
        valid,
        2,
    )
    assert out.dtype == dtype and out.device.type == device.type
    assert out.min() >= 0 and out.max() <= 1


def test_all_missing_neighbourhood_mixes_the_filled_values():
    values = torch.full((1, 1, 6, 6), 2.0)
    valid = torch.zeros(1, 1, 6, 6, dtype=torch.bool)
    out = sample_pac_upsample(
        values, torch.zeros(1, 1, 12, 12), torch.zeros(1, 1, 6, 6), gaussian_spatial_logits(2, 1, 2.0), valid, 1
    )
    torch.testing.assert_close(out, torch.full((1, 1, 12, 12), 2.0))


def test_half_precision_is_computed_in_float32():
    torch.manual_seed(4)
    args = (
        torch.rand(1, 1, 5, 5),
        torch.randn(1, 2, 20, 20) * 3,
        torch.randn(1, 2, 5, 5) * 3,
        gaussian_spatial_logits(4, 2, 4.0),
    )
    ref = sample_pac_upsample(*args)
    out = sample_pac_upsample(*(a.bfloat16() for a in args))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0)


def test_spatial_logits_are_a_gaussian_of_the_distance():
    t = gaussian_spatial_logits(4, 1, 2.0)
    # Neighbour (0, 0) = up-left cell, pixel (0, 0): sample centre at -4 + 1.5 = -2.5 on both axes.
    assert t[0, 0, 0].item() == pytest.approx(-0.5 * (2 * 2.5**2) / 4)
    assert t[4, 1, 2].item() == pytest.approx(-0.5 * (0.5**2 + 0.5**2) / 4)
    assert math.isclose(t.max().item(), t[4].max().item())


def test_at_samples_takes_the_pixel_nearest_each_cell_centre():
    x = torch.arange(64.0).view(1, 1, 8, 8)
    assert at_samples(x, 4).flatten().tolist() == [9.0, 13.0, 41.0, 45.0]  # rows/cols 1 and 5
    assert at_samples(x, 2).flatten().tolist()[:2] == [0.0, 2.0]


def test_neighbours_replicate_the_border():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    nb = lr_neighbours(x, 1)
    assert nb.shape == (1, 1, 9, 2, 3)
    assert nb[0, 0, :, 0, 0].tolist() == [0, 0, 1, 0, 0, 1, 3, 3, 4]


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(feats_lr=torch.zeros(1, 2, 3, 3)), "feats_lr"),
        (dict(feats_hr=torch.zeros(1, 3, 8, 12)), "integer upscale"),
        (dict(spatial_logits=torch.zeros(9, 4, 4)), "spatial_logits"),
    ],
)
def test_shape_errors(bad, match):
    args = dict(
        values=torch.zeros(1, 1, 4, 4),
        feats_hr=torch.zeros(1, 3, 8, 8),
        feats_lr=torch.zeros(1, 3, 4, 4),
        spatial_logits=torch.zeros(25, 2, 2),
    )
    with pytest.raises(ValueError, match=match):
        sample_pac_upsample(**{**args, **bad})


def test_channels_last_features_give_the_same_result():
    torch.manual_seed(5)
    args = (
        torch.rand(1, 1, 4, 4),
        torch.randn(1, 3, 16, 16),
        torch.randn(1, 3, 4, 4),
        gaussian_spatial_logits(4, 2, 4.0),
    )
    ref = sample_pac_upsample(*args)
    out = sample_pac_upsample(args[0], args[1].to(memory_format=torch.channels_last), *args[2:])
    torch.testing.assert_close(out, ref)
