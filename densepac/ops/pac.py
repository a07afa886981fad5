"""Pixel-adaptive convolution (Su et al., CVPR 2019), functional form.

``out_i = sum_j K(f_i, f_j) W[p_i - p_j] x_j (+ b)``, optionally divided by ``sum_j K(f_i, f_j)``.

Memory is the point of this implementation. The reference code unfolds the input into an
(N, C, k*k, H, W) buffer; here the sum runs over the k*k filter taps, one tap at a time,
inside a custom ``autograd.Function`` whose backward recomputes each tap's kernel instead of
storing it. Peak memory is a few feature maps, whatever the kernel size.

Geometry (what ``i`` and ``j`` are):

* ``pac_conv2d``: output pixel ``o`` reads inputs ``o*stride - padding + dilation*t``; its own
  feature ``f_i`` is the guide at the filter's centre tap ``t = k // 2`` (clamped into the
  image), which is the output pixel itself for the usual odd ``k`` with "same" padding.
  Taps that fall outside the image contribute nothing, to the sum or to the normalizer.
* ``pac_conv_transpose2d``: the guide lives at the output resolution. ``f_i`` is the guide at
  the output pixel; input sample ``j`` takes the guide at the centre of its footprint,
  ``j*stride - padding + (dilation*(k-1)) // 2`` (clamped into the output image). Only real
  input samples enter the normalizer, never the zeros a transposed convolution inserts.

Numerics:

* float16/bfloat16 inputs are computed in float32 (kernels, sums, normalizer; autocast is
  switched off inside) and the result is cast back; float64 stays float64.
* Normalized outputs never divide by 0: kernel values are taken relative to each output
  pixel's nearest tap in feature space, so when guide features are far apart and every
  kernel value underflows, the output tends to that tap's contribution (the centre tap for
  the usual "same" convolution). Pixels that no tap reaches get 0 (plus bias).
  Squared feature distances beyond the compute dtype's range (features ~1e19 apart in
  float32) are clamped to its largest value, so they all count as equally far.
* Guides are not checked for NaN/inf (that would cost a device sync per call): a NaN turns
  NaN the outputs whose window contains it, an infinite value at most those, and every
  other output is exactly what it would be with a finite value there.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from densepac.errors import InputError, InputTypeError
from densepac.ops.kernels import get_kernel

IntOr2 = int | tuple[int, int]


#: Pixels a tap reads or writes along (rows, cols): (first index, count, step) per axis.
Region = tuple[tuple[int, int, int], tuple[int, int, int]]


def _at(x: torch.Tensor, region: Region) -> torch.Tensor:
    """The view of ``x`` (..., H, W) at ``region``.

    Written with ``narrow`` rather than slices: a slice's end is clamped to the size, which
    torch.export cannot prove redundant for a symbolic size (``Min(w, w - 1)``), while the
    regions here are in range by construction.
    """
    (r0, rn, rs), (c0, cn, cs) = region
    x = x.narrow(-2, r0, (rn - 1) * rs + 1).narrow(-1, c0, (cn - 1) * cs + 1)
    return x if rs == cs == 1 else x[..., ::rs, ::cs]


@dataclass(frozen=True)
class _Tap:
    """One filter tap: which weight, which input/output pixels it connects."""

    a: int
    b: int
    src: Region  # into the input and the neighbour-guide map
    dst: Region  # into the output and the centre-guide map


def _conv_out_size(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _transpose_out_size(n: int, k: int, s: int, p: int, op: int, d: int) -> int:
    return (n - 1) * s - 2 * p + d * (k - 1) + op + 1


def _strided_range(n_idx: int, n_tgt: int, s: int, c: int) -> Region | None:
    """Indices ``m`` in [0, n_idx) with ``s*m + c`` in [0, n_tgt): (range of m, strided targets),
    each as (first, count, step)."""
    lo = max(0, -(c // s))  # ceil(-c / s)
    # min(n_idx - 1, (n_tgt - 1 - c) // s), written so that for sizes that are symbols with
    # n_tgt fixed by n_idx (a convolution's output size) the min is over constants only.
    slack = n_tgt - 1 - c - s * (n_idx - 1)
    hi = n_idx - 1 + min(0, slack // s)
    if hi < lo:
        return None
    return (lo, hi - lo + 1, 1), (s * lo + c, hi - lo + 1, s)


def _taps(
    idx_size: tuple[int, int],
    tgt_size: tuple[int, int],
    k: tuple[int, int],
    s: tuple[int, int],
    p: tuple[int, int],
    d: tuple[int, int],
    transposed: bool,
) -> list[_Tap]:
    """Filter taps connecting ``idx`` pixels ``m`` to ``tgt`` pixels ``s*m - p + d*t``.

    For a convolution ``idx`` is the output and ``tgt`` the input; for a transposed one the
    roles swap. A tap is restricted to the rectangle where both ends are inside their images,
    so out-of-image neighbours add nothing to the sum or to the normalizer.
    """
    taps = []
    for a in range(k[0]):
        ra = _strided_range(idx_size[0], tgt_size[0], s[0], d[0] * a - p[0])
        if ra is None:
            continue
        for b in range(k[1]):
            cb = _strided_range(idx_size[1], tgt_size[1], s[1], d[1] * b - p[1])
            if cb is None:
                continue
            idx, tgt = (ra[0], cb[0]), (ra[1], cb[1])
            taps.append(_Tap(a, b, src=idx, dst=tgt) if transposed else _Tap(a, b, src=tgt, dst=idx))
    return taps


def _gather2d(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    return x.index_select(2, rows).index_select(3, cols)


def _grouped_mm(wm: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(G, Co, Ci) x (N, G*Ci, h, w) -> (N, G*Co, h, w)."""
    n, _, h, w = x.shape
    g, co, ci = wm.shape
    return torch.matmul(wm, x.reshape(n, g, ci, h * w)).reshape(n, g * co, h, w)


def _accumulate_mm(out: torch.Tensor, tap: _Tap, wm: torch.Tensor, x: torch.Tensor) -> None:
    """``out[tap.dst] += wm @ x`` per group; in place by one batched GEMM when the tap spans all of ``out``."""
    n, c, h, w = out.shape
    if (h, w) == tuple(x.shape[-2:]) and out.is_contiguous():
        g, co, ci = wm.shape
        out.view(n * g, co, h * w).baddbmm_(wm.repeat(n, 1, 1), x.reshape(n * g, ci, h * w))
    else:
        _at(out, tap.dst).add_(_grouped_mm(wm, x))


def _outside_far(sq: torch.Tensor, inside: torch.Tensor | None, tap: _Tap, far: float | None = None) -> torch.Tensor:
    """Squared distances with padded neighbours pushed to ``far`` (default: the dtype's max).

    Before the kernel, so that a padded (zero) guide value never looks nearer than the
    nearest in-image neighbour, which would overflow ``K(sq) / K(ref)``.
    """
    if inside is None:
        return sq
    return sq.masked_fill(~_at(inside, tap.src), torch.finfo(sq.dtype).max if far is None else far)


def _masked(k: torch.Tensor, inside: torch.Tensor | None, tap: _Tap) -> torch.Tensor:
    """Kernel values (or derivatives) of padded neighbours set to exactly 0."""
    return k if inside is None else k * _at(inside, tap.src)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Kernels, sums and normalizers of half/bfloat16 inputs are computed in float32."""
    return torch.promote_types(dtype, torch.float32)


def _no_autocast(device: torch.device):
    """Inside the PAC function every op runs in the compute dtype, whatever autocast is on."""
    try:
        enabled = torch.is_autocast_enabled(device.type)
    except RuntimeError:  # a device type autocast does not know
        enabled = False
    return torch.autocast(device.type, enabled=False) if enabled else nullcontext()


def _sq_dist(ctr: torch.Tensor, nb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``f_i - f_j`` and ``||f_i - f_j||^2``, the latter clamped to the largest finite value.

    The clamp keeps an overflowed distance (e.g. features of 1e30 in float32) finite, so that
    ``K(s) / K(ref)`` never becomes ``inf - inf``; NaN (a NaN guide) passes through.
    """
    diff = ctr - nb
    return diff, diff.pow(2).sum(1, keepdim=True).clamp_max_(torch.finfo(diff.dtype).max)


class _PacFunction(torch.autograd.Function):
    """Sum over taps of ``W_t (K_t * x_t)``; backward recomputes every ``K_t``.

    ``x_src``/``nb_src`` are sliced by ``tap.src`` (input values and their guide features),
    ``ctr_src`` by ``tap.dst`` (the output pixels' own guide features). ``wmats[t]`` is the
    (G, Cout/G, Cin/G) matrix of tap t. ``inside`` (1, 1, H, W) bool, or None: source pixels
    outside it (padding) get kernel 0.

    Numerics: everything runs in float32 for half/bfloat16 inputs (float64 stays float64)
    and the result is cast back. With ``normalize`` every kernel value of an output pixel is
    divided by that of its nearest tap in feature space (``ref``, the smallest squared
    distance), which leaves the normalized output unchanged but keeps the normalizer >= 1:
    when the guide features are far apart and every ``K`` underflows, the output tends to
    the nearest neighbour's contribution instead of 0/0. Pixels that no tap reaches get 0.
    """

    @staticmethod
    def forward(
        ctx, x_src, nb_src, ctr_src, weight, taps, wmat_fn, wgrad_fn, out_shape, normalize, kernel_type, inside=None
    ):
        kern = get_kernel(kernel_type)
        cdt = _compute_dtype(x_src.dtype)
        n, cout, ho, wo = out_shape
        with _no_autocast(x_src.device):
            x, nb, ctr, wt = (t.to(cdt) for t in (x_src, nb_src, ctr_src, weight))
            ref = None
            if normalize:
                ref = x.new_full((n, 1, ho, wo), float("inf"))
                for tap in taps:
                    r = _at(ref, tap.dst)
                    sq = _sq_dist(_at(ctr, tap.dst), _at(nb, tap.src))[1]
                    sq = _outside_far(sq, inside, tap, float("inf"))
                    r.copy_(torch.minimum(r, sq))
                # No in-image tap at all (only with padding): any finite ref; the masked kernel is 0.
                ref.masked_fill_(ref.isinf(), 0.0)
            out = x.new_zeros(out_shape)
            norm = x.new_zeros(n, 1, ho, wo) if normalize else None
            for tap in taps:
                xs = _at(x, tap.src)
                sq = _outside_far(_sq_dist(_at(ctr, tap.dst), _at(nb, tap.src))[1], inside, tap)
                k = _masked(kern(sq, None if ref is None else _at(ref, tap.dst))[0], inside, tap)
                _accumulate_mm(out, tap, wmat_fn(wt, tap), xs * k)
                if norm is not None:
                    _at(norm, tap.dst).add_(k)
            if norm is not None:
                # >= 1 wherever a tap reaches (its nearest tap weighs exactly 1), 0 elsewhere.
                norm = norm.clamp_min(1.0)
                out = out / norm
        ctx.save_for_backward(x_src, nb_src, ctr_src, weight, out if normalize else None, norm, ref, inside)
        ctx.taps, ctx.wmat_fn, ctx.wgrad_fn, ctx.kernel_type = taps, wmat_fn, wgrad_fn, kernel_type
        return out.to(x_src.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x_src, nb_src, ctr_src, weight, out, norm, ref, inside = ctx.saved_tensors
        kern = get_kernel(ctx.kernel_type)
        need_x, need_nb, need_ctr, need_w = ctx.needs_input_grad[:4]
        need_guide = need_nb or need_ctr
        cdt = _compute_dtype(x_src.dtype)
        with _no_autocast(x_src.device):
            x, nb, ctr, wt = (t.to(cdt) for t in (x_src, nb_src, ctr_src, weight))
            grad_out = grad_out.to(cdt).contiguous()
            if norm is not None:
                # ``ref`` is a per-pixel constant factor of every kernel value: the normalized
                # output does not depend on it, so it gets no gradient.
                gr = grad_out / norm
                gnorm = -(gr * out).sum(1, keepdim=True)
            else:
                gr, gnorm = grad_out, None

            gx = torch.zeros_like(x) if need_x else None
            gnb = torch.zeros_like(nb) if need_guide else None
            gctr = torch.zeros_like(ctr) if need_guide else None
            gw = torch.zeros_like(wt) if need_w else None
            for tap in ctx.taps:
                xs = _at(x, tap.src)
                diff, sq = _sq_dist(_at(ctr, tap.dst), _at(nb, tap.src))
                k, dk = kern(_outside_far(sq, inside, tap), None if ref is None else _at(ref, tap.dst))
                k, dk = _masked(k, inside, tap), _masked(dk, inside, tap)
                wm = ctx.wmat_fn(wt, tap)
                g_t = _at(gr, tap.dst)
                if need_w:
                    xk = xs * k
                    g, co, ci = wm.shape
                    nb_, _, h, w = xk.shape
                    gmat = torch.einsum("ngop,ngip->goi", g_t.reshape(nb_, g, co, h * w), xk.reshape(nb_, g, ci, h * w))
                    ctx.wgrad_fn(gw, tap, gmat)
                if not (need_x or need_guide):
                    continue
                gxk = _grouped_mm(wm.transpose(1, 2), g_t)
                if need_x:
                    _at(gx, tap.src).addcmul_(gxk, k)
                if need_guide:
                    gk = (gxk.mul_(xs)).sum(1, keepdim=True)
                    if gnorm is not None:
                        gk += _at(gnorm, tap.dst)
                    t = diff.mul_(gk.mul_(dk).mul_(2.0))
                    _at(gctr, tap.dst).add_(t)
                    _at(gnb, tap.src).sub_(t)

        def back(g, like):
            return None if g is None else g.to(like.dtype)

        return (
            back(gx, x_src),
            back(gnb, nb_src),
            back(gctr, ctr_src),
            back(gw, weight),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )


def _check_common(
    input: torch.Tensor, guide: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, kernel_type: str
) -> None:
    for name, t in (("input", input), ("guide", guide), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise InputTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise InputError(f"{name} must be 4-D, got shape {tuple(t.shape)}")
    if guide.shape[0] != input.shape[0]:
        raise InputError(f"guide batch {guide.shape[0]} != input batch {input.shape[0]}")
    if bias is not None and (bias.dim() != 1):
        raise InputError(f"bias must be 1-D, got shape {tuple(bias.shape)}")
    get_kernel(kernel_type)


def _check_positive(name: str, v: tuple[int, int], allow_zero: bool = False) -> None:
    lo = 0 if allow_zero else 1
    if any(int(x) != x or x < lo for x in v):
        raise InputError(f"{name} must be {'non-negative' if allow_zero else 'positive'} integers, got {v}")


def _check_bias_length(bias: torch.Tensor | None, cout: int) -> None:
    if bias is not None and bias.shape[0] != cout:
        raise InputError(f"bias has {bias.shape[0]} values but the weight gives {cout} output channels")


def pac_conv2d(
    input: torch.Tensor,
    guide: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOr2 = 1,
    padding: IntOr2 = 0,
    dilation: IntOr2 = 1,
    kernel_type: str = "gaussian",
    normalize: bool = False,
    *,
    groups: int = 1,
) -> torch.Tensor:
    """Pixel-adaptive convolution.

    Args:
        input: (N, Cin, H, W).
        guide: (N, Cg, H, W) adapting features, same spatial size as ``input``.
        weight: (Cout, Cin / groups, kH, kW), as ``F.conv2d``.
        bias: (Cout,) or None.
        normalize: divide by the sum of kernel values over in-image taps.

    Returns:
        (N, Cout, Ho, Wo) with the output size of ``F.conv2d``.
    """
    _check_common(input, guide, weight, bias, kernel_type)
    k, s, p, d = _pair(weight.shape[-2:]), _pair(stride), _pair(padding), _pair(dilation)
    _check_positive("stride", s)
    _check_positive("dilation", d)
    _check_positive("padding", p, allow_zero=True)
    n, cin, h, w = input.shape
    if guide.shape[-2:] != input.shape[-2:]:
        raise InputError(f"guide size {tuple(guide.shape[-2:])} must equal input size {(h, w)}")
    if groups < 1 or cin % groups or weight.shape[0] % groups or weight.shape[1] * groups != cin:
        raise InputError(f"weight {tuple(weight.shape)} with groups={groups} does not fit {cin} input channels")
    ho, wo = _conv_out_size(h, k[0], s[0], p[0], d[0]), _conv_out_size(w, k[1], s[1], p[1], d[1])
    if ho < 1 or wo < 1:
        raise InputError(f"input {(h, w)} is too small for kernel {k} with padding {p}, dilation {d}")
    cout = weight.shape[0]
    _check_bias_length(bias, cout)
    guide = guide.to(_compute_dtype(input.dtype))

    # The centre tap's guide is each output pixel's own feature.
    rows = (torch.arange(ho, device=input.device) * s[0] - p[0] + d[0] * (k[0] // 2)).clamp(0, h - 1)
    cols = (torch.arange(wo, device=input.device) * s[1] - p[1] + d[1] * (k[1] // 2)).clamp(0, w - 1)
    ctr = _gather2d(guide, rows, cols)
    inside = None
    if any(p):
        # Zero-padded copies make every tap span the whole output, so each tap's product is
        # accumulated straight into the output by one GEMM; ``inside`` zeroes the kernel of
        # padded neighbours, which thus count neither in the sum nor in the normalizer.
        pad = (p[1], p[1], p[0], p[0])
        input, guide = F.pad(input, pad), F.pad(guide, pad)
        inside = F.pad(input.new_ones(1, 1, h, w, dtype=torch.bool), pad)
        h, w, p = h + 2 * p[0], w + 2 * p[1], (0, 0)
    taps = _taps((ho, wo), (h, w), k, s, p, d, transposed=False)

    def wmat(wt: torch.Tensor, tap: _Tap) -> torch.Tensor:
        return wt[:, :, tap.a, tap.b].reshape(groups, cout // groups, cin // groups)

    def wgrad(gw: torch.Tensor, tap: _Tap, gmat: torch.Tensor) -> None:
        gw[:, :, tap.a, tap.b] += gmat.reshape(cout, cin // groups)

    out = _PacFunction.apply(
        input, guide, ctr, weight, taps, wmat, wgrad, (n, cout, ho, wo), normalize, kernel_type, inside
    )
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def pac_conv_transpose2d(
    input: torch.Tensor,
    guide: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOr2 = 1,
    padding: IntOr2 = 0,
    output_padding: IntOr2 = 0,
    dilation: IntOr2 = 1,
    kernel_type: str = "gaussian",
    normalize: bool = False,
    *,
    groups: int = 1,
) -> torch.Tensor:
    """Pixel-adaptive transposed convolution.

    Args:
        input: (N, Cin, H, W).
        guide: (N, Cg, Ho, Wo) adapting features at the output resolution.
        weight: (Cin, Cout / groups, kH, kW), as ``F.conv_transpose2d``.
        bias: (Cout,) or None.
        normalize: divide by the sum of kernel values over the input samples that reach
            each output pixel.

    Returns:
        (N, Cout, Ho, Wo) with the output size of ``F.conv_transpose2d``.
    """
    _check_common(input, guide, weight, bias, kernel_type)
    k, s, p, d = _pair(weight.shape[-2:]), _pair(stride), _pair(padding), _pair(dilation)
    op = _pair(output_padding)
    _check_positive("stride", s)
    _check_positive("dilation", d)
    _check_positive("padding", p, allow_zero=True)
    _check_positive("output_padding", op, allow_zero=True)
    if op[0] >= max(s[0], d[0]) or op[1] >= max(s[1], d[1]):
        raise InputError(f"output_padding {op} must be smaller than stride {s} or dilation {d}")
    n, cin, h, w = input.shape
    if groups < 1 or cin % groups or weight.shape[0] != cin:
        raise InputError(f"weight {tuple(weight.shape)} with groups={groups} does not fit {cin} input channels")
    ho = _transpose_out_size(h, k[0], s[0], p[0], op[0], d[0])
    wo = _transpose_out_size(w, k[1], s[1], p[1], op[1], d[1])
    if ho < 1 or wo < 1:
        raise InputError(f"input {(h, w)} gives an empty output with kernel {k}, padding {p}")
    if tuple(guide.shape[-2:]) != (ho, wo):
        raise InputError(f"guide size {tuple(guide.shape[-2:])} must equal the output size {(ho, wo)}")
    cin_g, cout_g = cin // groups, weight.shape[1]
    cout = cout_g * groups
    _check_bias_length(bias, cout)
    guide = guide.to(_compute_dtype(input.dtype))

    # Each input sample's own feature: the guide at the centre of its output footprint.
    rows = (torch.arange(h, device=input.device) * s[0] - p[0] + (d[0] * (k[0] - 1)) // 2).clamp(0, ho - 1)
    cols = (torch.arange(w, device=input.device) * s[1] - p[1] + (d[1] * (k[1] - 1)) // 2).clamp(0, wo - 1)
    nb = _gather2d(guide, rows, cols)
    taps = _taps((h, w), (ho, wo), k, s, p, d, transposed=True)

    def wmat(wt: torch.Tensor, tap: _Tap) -> torch.Tensor:
        return wt[:, :, tap.a, tap.b].reshape(groups, cin_g, cout_g).transpose(1, 2)

    def wgrad(gw: torch.Tensor, tap: _Tap, gmat: torch.Tensor) -> None:
        gw[:, :, tap.a, tap.b] += gmat.transpose(1, 2).reshape(cin, cout_g)

    out = _PacFunction.apply(input, nb, guide, weight, taps, wmat, wgrad, (n, cout, ho, wo), normalize, kernel_type)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def pac_pool2d(
    input: torch.Tensor,
    guide: torch.Tensor,
    kernel_size: IntOr2,
    stride: IntOr2 = 1,
    padding: IntOr2 = 0,
    dilation: IntOr2 = 1,
    kernel_type: str = "gaussian",
) -> torch.Tensor:
    """Pixel-adaptive average pooling: per channel, the kernel-weighted mean of each window.

    Args:
        input: (N, C, H, W).
        guide: (N, Cg, H, W).

    Returns:
        (N, C, Ho, Wo); with a constant guide equal to
        ``F.avg_pool2d(..., count_include_pad=False)`` for the same window.
    """
    if not isinstance(input, torch.Tensor) or input.dim() != 4:
        raise InputError(f"input must be a 4-D tensor, got {getattr(input, 'shape', type(input))}")
    c = input.shape[1]
    weight = input.new_ones((c, 1, *_pair(kernel_size)))
    return pac_conv2d(input, guide, weight, None, stride, padding, dilation, kernel_type, normalize=True, groups=c)
