"""PAC ops against their torch twins, a slow direct loop, and gradcheck."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from densepac.ops import PacConv2d, PacConvTranspose2d, PacPool2d, pac_conv2d, pac_conv_transpose2d, pac_pool2d
from densepac.ops.kernels import get_kernel


def _kernel(fi, fj, kernel_type):
    return get_kernel(kernel_type)(((fi - fj) ** 2).sum())[0]


def ref_pac_conv2d(x, guide, weight, bias, stride, padding, dilation, kernel_type, normalize):
    """Direct transcription of the definition, one output pixel at a time."""
    n, cin, h, w = x.shape
    cout, _, kh, kw = weight.shape
    ho = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    out = x.new_zeros(n, cout, ho, wo)
    for b_, oy, ox in itertools.product(range(n), range(ho), range(wo)):
        cy = min(max(oy * stride - padding + dilation * (kh // 2), 0), h - 1)
        cx = min(max(ox * stride - padding + dilation * (kw // 2), 0), w - 1)
        acc, norm = x.new_zeros(cout), x.new_zeros(())
        for a, c in itertools.product(range(kh), range(kw)):
            iy, ix = oy * stride - padding + dilation * a, ox * stride - padding + dilation * c
            if 0 <= iy < h and 0 <= ix < w:
                k = _kernel(guide[b_, :, cy, cx], guide[b_, :, iy, ix], kernel_type)
                acc = acc + k * weight[:, :, a, c] @ x[b_, :, iy, ix]
                norm = norm + k
        out[b_, :, oy, ox] = acc / norm if normalize else acc
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def ref_pac_conv_transpose2d(x, guide, weight, bias, stride, padding, dilation, kernel_type, normalize):
    n, cin, h, w = x.shape
    _, cout, kh, kw = weight.shape
    ho, wo = guide.shape[-2:]
    out, norm = x.new_zeros(n, cout, ho, wo), x.new_zeros(n, 1, ho, wo)
    for b_, iy, ix in itertools.product(range(n), range(h), range(w)):
        jy = min(max(iy * stride - padding + dilation * (kh - 1) // 2, 0), ho - 1)
        jx = min(max(ix * stride - padding + dilation * (kw - 1) // 2, 0), wo - 1)
        for a, c in itertools.product(range(kh), range(kw)):
            oy, ox = iy * stride - padding + dilation * a, ix * stride - padding + dilation * c
            if 0 <= oy < ho and 0 <= ox < wo:
                k = _kernel(guide[b_, :, oy, ox], guide[b_, :, jy, jx], kernel_type)
                out[b_, :, oy, ox] += k * weight[:, :, a, c].t() @ x[b_, :, iy, ix]
                norm[b_, 0, oy, ox] += k
    if normalize:
        out = out / norm.clamp_min(1e-12)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


CONV_GRID = [(k, s, p, d) for k, s, p, d in itertools.product([1, 2, 3, 4, 5], [1, 2, 3], [0, 1, 2], [1, 2])]


@pytest.mark.parametrize("k,s,p,d", CONV_GRID)
def test_conv2d_constant_guide_equals_conv2d(k, s, p, d):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 12, dtype=torch.float64)
    w, b = torch.randn(6, 4, k, k, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    if (9 + 2 * p - d * (k - 1) - 1) < 0:
        pytest.skip("empty output")
    g = torch.full((2, 3, 9, 12), 0.7, dtype=torch.float64)
    torch.testing.assert_close(pac_conv2d(x, g, w, b, s, p, d), F.conv2d(x, w, b, s, p, d))


@pytest.mark.parametrize(
    "k,s,p,d,op", [(k, s, p, d, op) for k, s, p, d in CONV_GRID for op in (0, 1) if op < max(s, d)]
)
def test_conv_transpose2d_constant_guide_equals_conv_transpose2d(k, s, p, d, op):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 7, dtype=torch.float64)
    w, b = torch.randn(4, 6, k, k, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    ref = F.conv_transpose2d(x, w, b, s, p, op, 1, d)
    g = torch.full((2, 3, *ref.shape[-2:]), -1.3, dtype=torch.float64)
    torch.testing.assert_close(pac_conv_transpose2d(x, g, w, b, s, p, op, d), ref)


@pytest.mark.parametrize(
    "k,s,p", [(k, s, p) for k, s, p in itertools.product([1, 2, 3, 4, 5], [1, 2, 3], [0, 1, 2]) if p <= k // 2]
)
def test_pool2d_constant_guide_equals_avg_pool(k, s, p):
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64)
    g = torch.zeros(2, 2, 9, 11, dtype=torch.float64)
    torch.testing.assert_close(pac_pool2d(x, g, k, s, p), F.avg_pool2d(x, k, s, p, count_include_pad=False))


def test_groups_match_torch():
    x = torch.randn(2, 4, 8, 9, dtype=torch.float64)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    g = torch.zeros(2, 1, 8, 9, dtype=torch.float64)
    torch.testing.assert_close(pac_conv2d(x, g, w, None, 1, 1, groups=2), F.conv2d(x, w, None, 1, 1, groups=2))
    wt = torch.randn(4, 3, 4, 4, dtype=torch.float64)
    ref = F.conv_transpose2d(x, wt, None, 2, 1, groups=2)
    gt = torch.zeros(2, 1, *ref.shape[-2:], dtype=torch.float64)
    torch.testing.assert_close(pac_conv_transpose2d(x, gt, wt, None, 2, 1, groups=2), ref)


@pytest.mark.parametrize("kernel_type", ["gaussian", "cauchy"])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("k,s,p,d", [(3, 1, 1, 1), (4, 2, 1, 1), (3, 2, 2, 2), (2, 1, 0, 1), (5, 1, 3, 1)])
def test_conv2d_matches_direct_loop(kernel_type, normalize, k, s, p, d):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    g = torch.randn(2, 2, 6, 7, dtype=torch.float64)
    w, b = torch.randn(4, 3, k, k, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    out = pac_conv2d(x, g, w, b, s, p, d, kernel_type, normalize)
    torch.testing.assert_close(out, ref_pac_conv2d(x, g, w, b, s, p, d, kernel_type, normalize))


@pytest.mark.parametrize("kernel_type", ["gaussian", "cauchy"])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("k,s,p,op", [(5, 2, 2, 1), (4, 2, 1, 0), (3, 3, 0, 2), (3, 1, 1, 0), (8, 4, 2, 0)])
def test_conv_transpose2d_matches_direct_loop(kernel_type, normalize, k, s, p, op):
    torch.manual_seed(2)
    x = torch.randn(1, 3, 4, 5, dtype=torch.float64)
    w, b = torch.randn(3, 2, k, k, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    size = F.conv_transpose2d(x, w, None, s, p, op).shape[-2:]
    g = torch.randn(1, 2, *size, dtype=torch.float64)
    out = pac_conv_transpose2d(x, g, w, b, s, p, op, 1, kernel_type, normalize)
    torch.testing.assert_close(out, ref_pac_conv_transpose2d(x, g, w, b, s, p, 1, kernel_type, normalize))


def test_normalization_excludes_out_of_image_neighbours():
    # A constant input normalized with a constant guide stays constant up to the border:
    # zero padding would pull border pixels towards 0 if padded taps counted.
    x = torch.full((1, 1, 6, 6), 2.0, dtype=torch.float64)
    g = torch.zeros(1, 1, 6, 6, dtype=torch.float64)
    w = torch.ones(1, 1, 5, 5, dtype=torch.float64)
    out = pac_conv2d(x, g, w, padding=2, normalize=True)
    torch.testing.assert_close(out, x)
    # The corner pixel sees a 3x3 in-image window: its normalizer is 9, not 25.
    x = torch.zeros(1, 1, 6, 6, dtype=torch.float64)
    x[0, 0, 0, 0] = 9.0
    out = pac_conv2d(x, g, w, padding=2, normalize=True)
    assert out[0, 0, 0, 0].item() == pytest.approx(1.0)


def test_adaptive_kernel_stops_across_edges():
    # A step in the guide: with a sharp kernel, a normalized box filter does not blur across it.
    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    x[..., 4:] = 1.0
    g = x * 20.0
    out = pac_pool2d(x, g, 3, padding=1)
    torch.testing.assert_close(out, x, atol=1e-12, rtol=0)
    assert F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)[0, 0, 0, 3].item() > 0.3


@pytest.mark.parametrize("kernel_type", ["gaussian", "cauchy"])
@pytest.mark.parametrize("normalize", [False, True])
def test_gradcheck_conv2d(kernel_type, normalize):
    torch.manual_seed(3)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    g = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda *a: pac_conv2d(*a, 2, 1, 1, kernel_type, normalize), (x, g, w, b))


@pytest.mark.parametrize("kernel_type", ["gaussian", "cauchy"])
@pytest.mark.parametrize("normalize", [False, True])
def test_gradcheck_conv_transpose2d(kernel_type, normalize):
    torch.manual_seed(4)
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(1, 2, 7, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda *a: pac_conv_transpose2d(*a, 2, 1, 0, 1, kernel_type, normalize), (x, g, w, b))


def test_gradcheck_pool2d():
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(1, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda x, g: pac_pool2d(x, g, 3, 1, 1), (x, g))


def test_gradcheck_grouped_dilated():
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    g = torch.randn(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda x, g, w: pac_conv2d(x, g, w, None, 1, 2, 2, normalize=True, groups=2), (x, g, w))


def test_modules_equal_functional(device, dtype):
    torch.manual_seed(5)
    x = torch.randn(2, 3, 10, 11, device=device, dtype=dtype)
    g = torch.randn(2, 4, 10, 11, device=device, dtype=dtype)
    conv = PacConv2d(3, 5, 3, padding=1, normalize=True, kernel_type="cauchy").to(device, dtype)
    torch.testing.assert_close(conv(x, g), pac_conv2d(x, g, conv.weight, conv.bias, 1, 1, 1, "cauchy", True))
    up = PacConvTranspose2d(3, 2, 5, stride=2, padding=2, output_padding=1).to(device, dtype)
    g2 = torch.randn(2, 4, 20, 22, device=device, dtype=dtype)
    torch.testing.assert_close(up(x, g2), pac_conv_transpose2d(x, g2, up.weight, up.bias, 2, 2, 1))
    pool = PacPool2d(3, padding=1)
    torch.testing.assert_close(pool(x, g), pac_pool2d(x, g, 3, 1, 1))
    assert "kernel_type='cauchy'" in repr(conv)


def test_transpose_module_infers_output_padding_from_guide():
    up = PacConvTranspose2d(2, 2, 5, stride=2, padding=2)
    x = torch.randn(1, 2, 4, 4)
    assert up(x, torch.randn(1, 1, 7, 7)).shape[-2:] == (7, 7)
    assert up(x, torch.randn(1, 1, 8, 8)).shape[-2:] == (8, 8)
    with pytest.raises(ValueError, match="guide size"):
        up(x, torch.randn(1, 1, 9, 9))


def test_from_conv_copies_weights_bit_for_bit():
    conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1, dilation=1, bias=True)
    pac = PacConv2d.from_conv(conv)
    assert torch.equal(pac.weight, conv.weight) and torch.equal(pac.bias, conv.bias)
    assert pac.weight.data_ptr() != conv.weight.data_ptr()
    x = torch.randn(1, 3, 9, 9)
    torch.testing.assert_close(pac(x, torch.zeros(1, 1, 9, 9)), conv(x))
    same = torch.nn.Conv2d(3, 4, 5, padding="same", bias=False)
    assert PacConv2d.from_conv(same).padding == (2, 2)
    convt = torch.nn.ConvTranspose2d(3, 4, 4, stride=2, padding=1)
    pact = PacConvTranspose2d.from_conv(convt)
    assert torch.equal(pact.weight, convt.weight)
    torch.testing.assert_close(pact(x, torch.zeros(1, 1, 18, 18)), convt(x))
    with pytest.raises(TypeError):
        PacConv2d.from_conv(convt)


def test_non_contiguous_inputs():
    x = torch.randn(1, 9, 8, 3, dtype=torch.float64).permute(0, 3, 1, 2)  # (1, 3, 9, 8), channels last
    g = torch.randn(1, 8, 9, 2, dtype=torch.float64).permute(0, 3, 2, 1)
    w = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    assert not x.is_contiguous()
    torch.testing.assert_close(pac_conv2d(x, g, w, padding=1), pac_conv2d(x.contiguous(), g.contiguous(), w, padding=1))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: pac_conv2d(torch.randn(3, 8, 8), torch.randn(1, 1, 8, 8), torch.randn(1, 3, 3, 3)), "4-D"),
        (lambda: pac_conv2d(torch.randn(1, 3, 8, 8), torch.randn(1, 1, 7, 8), torch.randn(1, 3, 3, 3)), "guide size"),
        (lambda: pac_conv2d(torch.randn(1, 3, 8, 8), torch.randn(2, 1, 8, 8), torch.randn(1, 3, 3, 3)), "batch"),
        (lambda: pac_conv2d(torch.randn(1, 3, 8, 8), torch.randn(1, 1, 8, 8), torch.randn(1, 2, 3, 3)), "does not fit"),
        (
            lambda: pac_conv2d(torch.randn(1, 3, 8, 8), torch.randn(1, 1, 8, 8), torch.randn(1, 3, 3, 3), stride=0),
            "stride",
        ),
        (lambda: pac_conv2d(torch.randn(1, 3, 2, 2), torch.randn(1, 1, 2, 2), torch.randn(1, 3, 3, 3)), "too small"),
        (
            lambda: pac_conv2d(
                torch.randn(1, 3, 8, 8), torch.randn(1, 1, 8, 8), torch.randn(1, 3, 3, 3), kernel_type="box"
            ),
            "kernel_type",
        ),
        (
            lambda: pac_conv_transpose2d(
                torch.randn(1, 3, 4, 4), torch.randn(1, 1, 9, 9), torch.randn(3, 1, 4, 4), stride=2, padding=1
            ),
            "output size",
        ),
        (
            lambda: pac_conv_transpose2d(
                torch.randn(1, 3, 4, 4),
                torch.randn(1, 1, 8, 8),
                torch.randn(3, 1, 4, 4),
                stride=2,
                padding=1,
                output_padding=2,
            ),
            "output_padding",
        ),
        (lambda: PacConv2d(3, 4, 3, padding_mode="reflect"), "padding_mode"),
    ],
)
def test_exceptions(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_type_error_for_non_tensor():
    with pytest.raises(TypeError):
        pac_conv2d([[1.0]], torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    torch.manual_seed(6)
    x, g = torch.randn(2, 4, 12, 13), torch.randn(2, 3, 12, 13)
    conv = PacConv2d(4, 5, 5, padding=2, normalize=True)
    xs = [t.clone().requires_grad_() for t in (x, g)]
    out_cpu = conv(*xs)
    out_cpu.square().sum().backward()
    xc = [t.cuda().requires_grad_() for t in (x, g)]
    conv_cuda = PacConv2d(4, 5, 5, padding=2, normalize=True).cuda()
    conv_cuda.load_state_dict(conv.state_dict())
    out_cuda = conv_cuda(*xc)
    out_cuda.square().sum().backward()
    torch.testing.assert_close(out_cuda.cpu(), out_cpu, atol=1e-4, rtol=1e-4)
    for a, b in zip(xs, xc):
        torch.testing.assert_close(b.grad.cpu(), a.grad, atol=1e-3, rtol=1e-3)
