"""Numerical robustness of PAC and PAC-CRF: extreme guides, half precision, non-finite guides.

What is guaranteed (and tested here):

* Far-apart guide features, where every off-centre kernel value underflows to 0, never give
  0/0: a normalized PAC output tends to its nearest tap's contribution (in feature space),
  which for the usual "same" convolution is the centre tap. Pixels that no tap reaches get
  0 (plus bias), never NaN.
* float16 / bfloat16 inputs are computed in float32 inside the ops and cast back; results
  are finite and match the float32 op on the same (rounded) inputs to the dtype's precision.
* Gradients stay finite for extreme guides.
* Non-finite guide values are not checked (that would cost a device sync per call): they
  turn NaN at most the outputs whose window contains them, and leave every other output
  exactly as with a finite guide.
"""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from densepac.ops import PacConv2d, PacConvTranspose2d, PacPool2d, pac_conv2d, pac_conv_transpose2d, pac_pool2d
from densepac.ops.crf import PacCRF
from densepac.ops.kernels import KERNEL_TYPES, get_kernel

HALF_TYPES = [torch.float16, torch.bfloat16]
# Relative precision of the result compared with float32 on identical inputs.
TOL = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-5, torch.float64: 1e-12}


def _guide(shape, scale, seed=0, dtype=torch.float32):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale
    return g.to(dtype)


def _scales(dtype):
    """Guide magnitudes that are still finite (with room for differences) in ``dtype``."""
    return [s for s in (1.0, 1e4, 1e30) if s * 5 < torch.finfo(dtype).max]


def _close(actual, expected, dtype):
    """Within a few units of ``dtype``'s precision, relative to the output's magnitude."""
    tol = TOL[dtype] * max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual.float(), expected.float(), rtol=TOL[dtype], atol=tol)


# ----------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("kernel_type", KERNEL_TYPES)
def test_kernel_relative_to_a_reference_distance(kernel_type):
    kern = get_kernel(kernel_type)
    sq = torch.tensor([0.0, 0.5, 3.0, 40.0], dtype=torch.float64)
    ref = torch.tensor(0.5, dtype=torch.float64)
    k, dk = kern(sq)
    k_ref = kern(ref)[0]
    kr, dkr = kern(sq, ref)
    torch.testing.assert_close(kr, k / k_ref)
    torch.testing.assert_close(dkr, dk / k_ref)
    # Where K(ref) itself underflows the ratio is still exact: 1 at the reference.
    big = torch.tensor([1e6, 1e6 + 2.0, 3e38], dtype=torch.float32)
    kb, dkb = kern(big, big[:1])
    assert torch.isfinite(kb).all() and torch.isfinite(dkb).all()
    assert kb[0].item() == 1.0 and 0.0 <= kb[2].item() < kb[1].item() < 1.0


# ----------------------------------------------------------------------------- far-apart features


@pytest.mark.parametrize("kernel_type", KERNEL_TYPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, *HALF_TYPES], ids=["f32", "f64", "f16", "bf16"])
def test_far_features_leave_only_the_centre_tap(kernel_type, dtype):
    # Neighbours 1e4 (float16) or 1e30 apart: every off-centre K is (about) 0 in the dtype.
    scale = max(_scales(dtype))
    x = torch.randn(2, 3, 7, 8).to(dtype)
    g = _guide((2, 2, 7, 8), scale, dtype=dtype)
    w, b = torch.randn(4, 3, 3, 3).to(dtype), torch.randn(4).to(dtype)
    centre_only = F.conv2d(x.double(), w.double()[:, :, 1:2, 1:2], b.double())
    for normalize in (False, True):
        out = pac_conv2d(x, g, w, b, padding=1, kernel_type=kernel_type, normalize=normalize)
        assert out.dtype == dtype and torch.isfinite(out).all()
        _close(out, centre_only, dtype)
    _close(pac_pool2d(x, g, 3, padding=1, kernel_type=kernel_type), x.double(), dtype)


def _nearest_sample_upsampling(x, guide, stride, padding, ksize):
    """Normalized transposed PAC with all-ones weights in the limit of far-apart features:
    each output pixel takes the value of the reaching input sample whose (footprint-centre)
    feature is nearest to its own."""
    _, _, h, w = x.shape
    ho, wo = guide.shape[-2:]
    best = torch.full((ho, wo), float("inf"), dtype=torch.float64)
    out = torch.zeros(ho, wo, dtype=torch.float64)
    g = guide[0].double()
    for iy, ix in itertools.product(range(h), range(w)):
        jy = min(max(iy * stride - padding + (ksize - 1) // 2, 0), ho - 1)
        jx = min(max(ix * stride - padding + (ksize - 1) // 2, 0), wo - 1)
        for a, c in itertools.product(range(ksize), range(ksize)):
            oy, ox = iy * stride - padding + a, ix * stride - padding + c
            if 0 <= oy < ho and 0 <= ox < wo:
                d = ((g[:, oy, ox] - g[:, jy, jx]) ** 2).sum()
                if d < best[oy, ox]:
                    best[oy, ox], out[oy, ox] = d, x[0, 0, iy, ix].double()
    return out


@pytest.mark.parametrize("kernel_type", KERNEL_TYPES)
@pytest.mark.parametrize("dtype", [torch.float32, *HALF_TYPES], ids=["f32", "f16", "bf16"])
def test_far_features_transposed_takes_the_nearest_sample_not_zero(kernel_type, dtype):
    # Joint-bilateral-style upsampling: most output pixels coincide with no sample's centre,
    # so every kernel value they see underflows; the old normalizer gave 0 (or 0/0 = NaN).
    x = (torch.rand(1, 1, 4, 5) + 1.0).to(dtype)  # depth-like, never 0
    w = torch.ones(1, 1, 4, 4, dtype=dtype)
    for scale in _scales(dtype)[1:]:
        guide = _guide((1, 3, 8, 10), scale, seed=3, dtype=dtype)
        out = pac_conv_transpose2d(x, guide, w, stride=2, padding=1, kernel_type=kernel_type, normalize=True)
        assert out.dtype == dtype and torch.isfinite(out).all()
        # A normalized filter with positive weights: a mean of the samples, never 0 or NaN.
        assert out.min() >= x.min() and out.max() <= x.max()
        if kernel_type == "gaussian" and scale**2 < torch.finfo(torch.float32).max:
            # (The heavy-tailed cauchy kernel keeps ratios ~ref/s at any scale, and squared
            # distances beyond float32's range all count as equally far.)
            expected = _nearest_sample_upsampling(x, guide, 2, 1, 4)
            torch.testing.assert_close(out[0, 0].double(), expected, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, *HALF_TYPES], ids=["f32", "f16", "bf16"])
@pytest.mark.parametrize(
    "k,s,p,d", [(3, 1, 1, 1), (3, 1, 2, 1), (3, 1, 3, 2), (4, 2, 3, 1), (2, 1, 1, 1), (5, 2, 4, 2)]
)
def test_borders_never_divide_by_zero(dtype, k, s, p, d):
    # Large padding/dilation: the clamped centre feature is often no tap of its own window,
    # so with far-apart features every tap an output sees may underflow.
    scale = max(_scales(dtype))
    x = torch.randn(1, 2, 6, 7).to(dtype)
    g = _guide((1, 2, 6, 7), scale, seed=k + p, dtype=dtype)
    w = torch.rand(3, 2, k, k).to(dtype) + 0.5
    for kernel_type in KERNEL_TYPES:
        out = pac_conv2d(x, g, w, None, s, p, d, kernel_type, normalize=True)
        assert torch.isfinite(out).all(), (kernel_type, out)
        pooled = pac_pool2d(x, g, k, s, min(p, k // 2), d, kernel_type)
        assert torch.isfinite(pooled).all()
        # Each pooled value is a convex combination of the window: inside the input's range.
        assert pooled.min() >= x.min() - 1e-3 and pooled.max() <= x.max() + 1e-3
    wt = torch.rand(2, 3, k, k).to(dtype)
    ho = (6 - 1) * s - 2 * min(p, k - 1) + d * (k - 1) + 1
    wo = (7 - 1) * s - 2 * min(p, k - 1) + d * (k - 1) + 1
    if ho > 0 and wo > 0:
        gt = _guide((1, 2, ho, wo), scale, seed=7, dtype=dtype)
        out = pac_conv_transpose2d(x, gt, wt, None, s, min(p, k - 1), 0, d, normalize=True)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("dtype", [torch.float32, *HALF_TYPES], ids=["f32", "f16", "bf16"])
def test_pixels_no_tap_reaches_are_zero_not_nan(dtype):
    # A 1x1 transposed convolution with stride 2 reaches only the even pixels.
    x = torch.randn(1, 2, 3, 3).to(dtype)
    w, b = torch.randn(2, 2, 1, 1).to(dtype), torch.randn(2).to(dtype)
    g = _guide((1, 1, 5, 5), 1.0, dtype=dtype)
    out = pac_conv_transpose2d(x, g, w, b, stride=2, normalize=True)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[..., 1::2, :], b.view(1, 2, 1, 1).expand(1, 2, 2, 5))
    _close(out, F.conv_transpose2d(x.float(), w.float(), b.float(), stride=2), dtype)  # K = 1 at every tap


# ----------------------------------------------------------------------------- half precision


def _ops(kernel_type, normalize, dtype):
    """(name, op(x, guide at input res, guide at output res)) for the three PAC ops, with
    weights rounded to ``dtype`` and used in the inputs' dtype."""
    w = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(1)).to(dtype)
    wt = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(2)).to(dtype)
    return [
        ("conv2d", lambda x, g, gt: pac_conv2d(x, g, w.to(x.dtype), None, 1, 1, 1, kernel_type, normalize)),
        (
            "conv_transpose2d",
            lambda x, g, gt: pac_conv_transpose2d(x, gt, wt.to(x.dtype), None, 2, 1, 0, 1, kernel_type, normalize),
        ),
        ("pool2d", lambda x, g, gt: pac_pool2d(x, g, 3, 1, 1, 1, kernel_type)),
    ]


@pytest.mark.parametrize("dtype", HALF_TYPES, ids=["f16", "bf16"])
@pytest.mark.parametrize("kernel_type", KERNEL_TYPES)
@pytest.mark.parametrize("normalize", [False, True])
def test_half_precision_matches_float32(dtype, kernel_type, normalize):
    for scale in _scales(dtype):
        x = torch.randn(2, 3, 6, 7).to(dtype)
        g, gt = _guide((2, 2, 6, 7), scale, 1, dtype), _guide((2, 2, 12, 14), scale, 2, dtype)
        for name, op in _ops(kernel_type, normalize, dtype):
            xs = [t.clone().requires_grad_() for t in (x, g, gt)]
            out = op(*xs)
            assert out.dtype == dtype and torch.isfinite(out).all(), (name, scale)
            # The same (rounded) inputs in float32: only the final rounding may differ.
            x32 = [t.detach().float().requires_grad_() for t in (x, g, gt)]
            ref = op(*x32)
            _close(out, ref, dtype)
            grad_out = torch.randn_like(ref).to(dtype)
            out.backward(grad_out)
            ref.backward(grad_out.float())
            for a, b in zip(xs, x32):
                if b.grad is None:
                    continue
                assert a.grad.dtype == dtype and torch.isfinite(a.grad).all(), (name, scale)
                _close(a.grad, b.grad, dtype)


@pytest.mark.parametrize("dtype", HALF_TYPES, ids=["f16", "bf16"])
def test_modules_run_in_half_precision(dtype):
    x = torch.randn(1, 3, 8, 8, dtype=dtype)
    g = _guide((1, 2, 8, 8), max(_scales(dtype)), dtype=dtype)
    for module in (PacConv2d(3, 4, 3, padding=1, normalize=True), PacPool2d(3, padding=1)):
        out = module.to(dtype)(x, g)
        assert out.dtype == dtype and torch.isfinite(out).all()
    up = PacConvTranspose2d(3, 2, 4, stride=2, padding=1, normalize=True).to(dtype)
    out = up(x, _guide((1, 2, 16, 16), max(_scales(dtype)), dtype=dtype))
    assert out.dtype == dtype and torch.isfinite(out).all()


def test_autocast_does_not_lower_the_precision_inside_pac():
    x, g = torch.randn(1, 3, 8, 8), _guide((1, 2, 8, 8), 3.0)
    w = torch.randn(4, 3, 3, 3)
    plain = pac_conv2d(x, g, w, padding=1, normalize=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = pac_conv2d(x, g, w, padding=1, normalize=True)
    assert auto.dtype == torch.float32 and torch.equal(auto, plain)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("kernel_type", KERNEL_TYPES)
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("scale", [1e4, 1e30])
def test_gradients_finite_for_extreme_guides(kernel_type, normalize, scale):
    torch.manual_seed(0)
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    g = _guide((1, 3, 6, 6), scale).requires_grad_()
    gt = _guide((1, 3, 12, 12), scale, seed=1).requires_grad_()
    w = torch.randn(3, 2, 3, 3, requires_grad=True)
    wt = torch.randn(2, 3, 4, 4, requires_grad=True)
    outs = [
        pac_conv2d(x, g, w, None, 1, 1, 1, kernel_type, normalize),
        pac_conv2d(x, g, w, None, 1, 3, 2, kernel_type, normalize),  # centre often off-window
        pac_conv_transpose2d(x, gt, wt, None, 2, 1, 0, 1, kernel_type, normalize),
        pac_pool2d(x, g, 3, 1, 1, 1, kernel_type),
    ]
    sum(o.square().sum() for o in outs).backward()
    for t in (x, g, gt, w, wt):
        assert torch.isfinite(t.grad).all()


@pytest.mark.parametrize("kernel_type", KERNEL_TYPES)
def test_gradcheck_when_kernels_underflow(kernel_type):
    # Features ~30 apart in float64: most K are below 1e-100 (gaussian) and the nearest tap
    # is often not the centre (transposed; dilated padding): the rescaled normalizer must
    # still give exact gradients.
    torch.manual_seed(4)
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    gt = (torch.randn(1, 2, 6, 8, dtype=torch.float64) * 30).requires_grad_()
    wt = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda *a: pac_conv_transpose2d(*a, None, 2, 1, 0, 1, kernel_type, True), (x, gt, wt))
    g = (torch.randn(1, 2, 3, 4, dtype=torch.float64) * 30).requires_grad_()
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda *a: pac_conv2d(*a, None, 1, 3, 2, kernel_type, True), (x, g, w))


# ----------------------------------------------------------------------------- non-finite guides


def _window(shape, y, x, r):
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[..., max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1] = True
    return mask


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("normalize", [False, True])
def test_non_finite_guide_stays_local(bad, normalize):
    x = torch.randn(1, 2, 9, 9)
    g = _guide((1, 2, 9, 9), 1.0)
    w = torch.randn(3, 2, 3, 3)
    broken = g.clone()
    broken[0, 1, 4, 5] = bad
    for op in (
        lambda gg: pac_conv2d(x, gg, w, padding=1, normalize=normalize),
        lambda gg: pac_pool2d(x, gg, 3, padding=1),
    ):
        clean, out = op(g), op(broken)
        near = _window(out.shape, 4, 5, 1)
        assert torch.equal(out[~near], clean[~near])  # everything else exactly unchanged
        if bad != bad:
            assert torch.isnan(out[near]).any()
    # Transposed: the guide is at the output resolution; a 4x4 stride-2 window reaches 2 px.
    xt, wt = torch.randn(1, 2, 5, 5), torch.randn(2, 2, 4, 4)
    gt = _guide((1, 2, 10, 10), 1.0)
    bt = gt.clone()
    bt[0, 0, 4, 4] = bad
    clean = pac_conv_transpose2d(xt, gt, wt, stride=2, padding=1, normalize=normalize)
    out = pac_conv_transpose2d(xt, bt, wt, stride=2, padding=1, normalize=normalize)
    near = _window(out.shape, 4, 4, 3)
    assert torch.equal(out[~near], clean[~near])


# ----------------------------------------------------------------------------- PAC-CRF


def _crf(kernel_type="gaussian", normalize=False):
    torch.manual_seed(0)
    return PacCRF(
        3, num_steps=2, kernels=((5, 1), (3, 2)), guide_features="rgbxy", normalize=normalize, kernel_type=kernel_type
    )


@pytest.mark.parametrize("dtype", HALF_TYPES, ids=["f16", "bf16"])
@pytest.mark.parametrize("kernel_type", KERNEL_TYPES)
@pytest.mark.parametrize("normalize", [False, True])
def test_crf_half_precision_finite_and_close(dtype, kernel_type, normalize):
    crf = _crf(kernel_type, normalize)
    for scale in _scales(dtype):
        unary = (torch.randn(1, 3, 12, 12) * 3).to(dtype).requires_grad_()
        guide = (torch.rand(1, 3, 12, 12) * scale).to(dtype)
        out = crf(unary, guide)
        assert out.dtype == dtype and torch.isfinite(out).all(), scale
        ref = crf(unary.detach().float(), guide.float())
        _close(out, ref, dtype)
        out.float().sum().backward()
        assert torch.isfinite(unary.grad).all()
        assert all(torch.isfinite(p.grad).all() for p in crf.parameters() if p.grad is not None)
        crf.zero_grad()


@pytest.mark.parametrize("kernel_type", KERNEL_TYPES)
@pytest.mark.parametrize("normalize", [False, True])
def test_crf_extreme_guides_finite_with_gradients(kernel_type, normalize):
    crf = _crf(kernel_type, normalize)
    for scale in (1e4, 1e30):
        unary = torch.randn(1, 3, 10, 10, requires_grad=True)
        guide = torch.rand(1, 3, 10, 10) * scale
        out = crf(unary, guide)
        assert torch.isfinite(out).all()
        out.square().sum().backward()
        assert torch.isfinite(unary.grad).all()
        assert all(torch.isfinite(p.grad).all() for p in crf.parameters() if p.grad is not None)
        crf.zero_grad()


def test_crf_nan_guide_spreads_at_most_steps_times_radius():
    crf = _crf()
    unary = torch.randn(1, 3, 16, 16)
    guide = torch.rand(1, 3, 16, 16)
    broken = guide.clone()
    broken[0, 0, 8, 7] = float("nan")
    clean, out = crf(unary, guide), crf(unary, broken)
    reach = crf.num_steps * max(d * (k // 2) for k, d in crf.kernels)
    near = _window(out.shape, 8, 7, reach)
    assert torch.equal(out[~near], clean[~near])
    assert torch.isnan(out[near]).any()
