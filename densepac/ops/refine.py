"""Training-free guided refinement by graph-regularised least squares (de Lutio et al., CVPR 2022).

In depth normalised by the source's robust range, ``z = (d - lo) / span``, the result minimises

    E(x) = s^2 sum_j c_j ((D x)_j - y_j)^2 + lam sum_{i~k} w_ik (x_i - x_k)^2 + delta sum_i (x_i - x0_i)^2

- ``D``: the source's sampling (``"area"``: block means; ``"point"``: pixel ``(s*i + s//2, s*j + s//2)``);
  ``c_j`` 1 on valid source pixels, 0 on missing ones; ``s^2`` lets each source pixel weigh
  as much as the ``s^2`` HR pixels it stands for, so ``lam`` means the same at every scale.
- ``i~k``: 4-neighbours, ``w_ik = exp(-||f_i - f_k||^2 / mu^2)`` on guide features ``f`` =
  [guide RGB, ``depth_weight`` x the bicubic-upsampled normalised source] (:func:`guide_features`).
- ``x0``: the starting estimate; the tiny ``delta`` decides only what nothing else does.

Two safeguards for real data, where ground truth and inputs have holes at occlusions:
with area sampling every edge weight is at least ``weight_floor`` times ``lam`` (a pixel the
guide cuts off from all its neighbours would otherwise absorb a whole block's constraint and
run to any value), and the result is clamped to the range of the valid source values in the
3x3 source neighbourhood of each pixel (a depth between its neighbours' depths).

All three terms are unchanged by an affine change of depth units, so only the features and
the solver's tolerance see the normalisation: ``lam``, ``mu``, ``delta`` mean the same in
millimetres as in metres, indoors as outdoors.

The normal equations ``(s^2 D^T C D + lam L + delta I) x = s^2 D^T C y + delta x0`` are solved by
Jacobi-preconditioned conjugate gradients, batched, from ``x0``. Gradients use implicit
differentiation (one more CG solve in backward), not the unrolled iterations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from densepac.errors import InputError
from densepac.ops.consistency import SAMPLINGS, check_source_pair, sample_as_source
from densepac.ops.fill import fill_holes, valid_mask
from densepac.ops.guided import depth_range, upsample_filled

__all__ = ["GraphRefine", "clamp_to_source_range", "graph_refine", "guide_features"]

#: Default smallest edge weight (fraction of ``lam``) under area sampling.
AREA_WEIGHT_FLOOR = 1e-3
#: The robust range of the source used for normalisation: these quantiles of its valid pixels.
_RANGE_QUANTILE = 0.01


def _normalisation(depth_lr: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample ``(lo, span)``, each (N, 1, 1, 1): the source's robust range (metres).

    A source without valid pixels gets (0, 1); a constant one gets ``span = |value|``.
    """
    vals = torch.where(valid, depth_lr, torch.full_like(depth_lr, float("nan"))).flatten(1)
    q = torch.tensor([_RANGE_QUANTILE, 1 - _RANGE_QUANTILE], dtype=vals.dtype, device=vals.device)
    lo, hi = torch.nanquantile(vals, q, dim=1).view(2, -1, 1, 1, 1)
    empty = torch.isnan(lo)
    lo = torch.where(empty, torch.zeros_like(lo), lo)
    hi = torch.where(empty, torch.ones_like(hi), hi)
    span = hi - lo
    span = torch.where(span > 0, span, torch.where(hi.abs() > 0, hi.abs(), torch.ones_like(hi)))
    return lo, span


def _features(z: torch.Tensor, valid: torch.Tensor, guide: torch.Tensor, depth_weight: float) -> torch.Tensor:
    """``[guide, depth_weight * bicubic(z)]`` for a normalised source ``z`` (0 where missing)."""
    zlo, zhi = depth_range(z, valid)
    up = upsample_filled(fill_holes(z, valid), tuple(guide.shape[-2:]), zlo, zhi)
    return torch.cat([guide, depth_weight * up], 1)


def guide_features(depth_lr: torch.Tensor, guide: torch.Tensor, depth_weight: float) -> torch.Tensor:
    """Graph features ``[guide, depth_weight * bicubic(z)]``, (N, Cg + 1, H, W).

    ``z`` is the source in the robust-range units of the module docstring (about [0, 1]),
    hole-filled, then bicubic-upsampled to the guide's size and clamped to the valid range.

    Args:
        depth_lr: (N, 1, h, w) metres, 0 or non-finite = missing.
        guide: (N, Cg, H, W), RGB in [0, 1].
        depth_weight: weight of the depth channel relative to the guide's channels.
    """
    valid = valid_mask(depth_lr)
    lr = torch.where(valid, depth_lr, torch.zeros_like(depth_lr)).to(guide.dtype)
    lo, span = _normalisation(lr, valid)
    return _features(torch.where(valid, (lr - lo) / span, torch.zeros_like(lr)), valid, guide, depth_weight)


def _to_hr(v: torch.Tensor, s: int) -> torch.Tensor:
    """(N, 1, h, w) -> (N, 1, h*s, w*s), each value repeated over its block."""
    n, c, h, w = v.shape
    return v[:, :, :, None, :, None].expand(n, c, h, s, w, s).reshape(n, c, h * s, w * s)


def _sample_mask(s: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(h*s, w*s) 1 at the pixel each point sample sits on, ``(s*i + s//2, s*j + s//2)``, else 0."""
    block = torch.zeros(s, s, dtype=like.dtype, device=like.device)
    block[s // 2, s // 2] = 1
    return block.repeat(h, w)


def _data_rhs(y: torch.Tensor, c: torch.Tensor, s: int, sampling: str) -> torch.Tensor:
    """``s^2 D^T C y`` for a source ``y`` (N, 1, h, w) with validity ``c`` (0/1, same shape)."""
    spread = _to_hr(c * y, s)
    return s * s * spread * _sample_mask(s, *y.shape[-2:], y) if sampling == "point" else spread


class _System:
    """The matrix ``s^2 D^T C D + L + delta I`` (``L`` with ``lam`` folded into the edge weights)."""

    def __init__(
        self, valid: torch.Tensor, s: int, sampling: str, wx: torch.Tensor, wy: torch.Tensor, delta: float
    ) -> None:
        self.s, self.sampling, self.wx, self.wy, self.delta = s, sampling, wx, wy, delta
        self.c = valid.to(wx.dtype)
        if sampling == "point":
            self.sample_hr = _data_rhs(torch.ones_like(self.c), self.c, s, sampling)  # s^2 D^T C D is diagonal
        degree = F.pad(wx, (0, 1)) + F.pad(wx, (1, 0)) + F.pad(wy, (0, 0, 0, 1)) + F.pad(wy, (0, 0, 1, 0))
        data = self.sample_hr if sampling == "point" else _to_hr(self.c, s) / (s * s)
        self.inv_diag = 1 / (data + degree + delta)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.sampling == "point":
            data = self.sample_hr * x
        else:
            data = _to_hr(self.c * sample_as_source(x, self.s, "area"), self.s)
        gx = self.wx * (x[..., 1:] - x[..., :-1])
        gy = self.wy * (x[..., 1:, :] - x[..., :-1, :])
        lap = F.pad(gx, (1, 0)) - F.pad(gx, (0, 1)) + F.pad(gy, (0, 0, 1, 0)) - F.pad(gy, (0, 0, 0, 1))
        return data + lap + self.delta * x


def _batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum((1, 2, 3), keepdim=True)


def _pcg(
    system: _System, b: torch.Tensor, x: torch.Tensor, max_iter: int, tol: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Jacobi-preconditioned CG from ``x`` until ``||b - A x|| <= tol ||b||`` per sample.

    Converged samples stop moving, so a sample's result does not depend on its batch mates.
    Returns the solution and the iterations each sample took, (N,) int64. Under
    ``torch.export`` the loop is a ``while_loop`` (an ONNX ``Loop``) with the same stopping rule.
    """
    tiny = torch.finfo(b.dtype).tiny
    r = b - system(x)
    z = system.inv_diag * r
    p, rz = z, _batch_dot(r, z)
    goal = tol * b.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    iterations = torch.zeros(b.shape[0], dtype=torch.long, device=b.device)

    def active_of(r: torch.Tensor) -> torch.Tensor:
        return r.flatten(1).norm(dim=1).view(-1, 1, 1, 1) > goal

    def step(active, x, r, p, rz, iterations):
        ap = system(p)
        pap = _batch_dot(p, ap)
        alpha = torch.where(active & (pap > 0), rz / pap.clamp_min(tiny), torch.zeros_like(pap))
        x = x + alpha * p
        r = r - alpha * ap
        z = system.inv_diag * r
        rz_next = _batch_dot(r, z)
        p = z + torch.where(rz > 0, rz_next / rz.clamp_min(tiny), torch.zeros_like(rz)) * p
        return x, r, p, rz_next, iterations + active.view(-1)

    state = (x, r, p, rz, iterations)
    if torch.compiler.is_exporting():
        from torch._higher_order_ops.while_loop import while_loop

        def cond(count, x, r, p, rz, iterations):
            return (count < max_iter) & active_of(r).any()

        def body(count, x, r, p, rz, iterations):
            return count + 1, *step(active_of(r), x, r, p, rz, iterations)

        count = torch.zeros((), dtype=torch.long, device=b.device)
        _, x, _, _, _, iterations = while_loop(cond, body, (count, *state))
        return x, iterations
    for _ in range(max_iter):
        active = active_of(state[1])
        if not bool(active.any()):
            break
        state = step(active, *state)
    return state[0], state[4]


class _GraphSolve(torch.autograd.Function):
    """``x = A(wx, wy)^-1 b`` with implicit gradients for ``b``, ``wx``, ``wy``."""

    @staticmethod
    def forward(
        ctx,
        b: torch.Tensor,
        wx: torch.Tensor,
        wy: torch.Tensor,
        start: torch.Tensor,
        valid: torch.Tensor,
        s: int,
        sampling: str,
        delta: float,
        max_iter: int,
        tol: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        system = _System(valid, s, sampling, wx, wy, delta)
        x, iterations = _pcg(system, b, start, max_iter, tol)
        ctx.save_for_backward(x, wx, wy, valid)
        ctx.settings = (s, sampling, delta, max_iter, tol)
        ctx.mark_non_differentiable(iterations)
        return x, iterations

    @staticmethod
    def backward(ctx, grad_x: torch.Tensor, _grad_iterations: torch.Tensor):
        x, wx, wy, valid = ctx.saved_tensors
        s, sampling, delta, max_iter, tol = ctx.settings
        system = _System(valid, s, sampling, wx, wy, delta)
        # A is symmetric: dLoss/db = A^-1 grad_x; an edge weight adds (e_i - e_k)(e_i - e_k)^T to A.
        gb, _ = _pcg(system, grad_x, torch.zeros_like(grad_x), max_iter, tol)
        gwx = -(gb[..., 1:] - gb[..., :-1]) * (x[..., 1:] - x[..., :-1])
        gwy = -(gb[..., 1:, :] - gb[..., :-1, :]) * (x[..., 1:, :] - x[..., :-1, :])
        return gb, gwx, gwy, None, None, None, None, None, None, None


def graph_refine(
    depth_init: torch.Tensor,
    depth_lr: torch.Tensor,
    guide: torch.Tensor,
    sampling: str,
    lam: float = 0.1,
    mu: float = 0.05,
    depth_weight: float = 0.5,
    delta: float = 1e-4,
    max_iter: int = 2000,
    tol: float = 1e-7,
    weight_floor: float | None = None,
    clamp: bool = True,
    return_iterations: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Refine ``depth_init`` by the graph-regularised least squares of the module docstring.

    Deterministic: a fixed sequence of operations, no randomness. The output follows the
    source closely where it is valid, not exactly (the smoothness and ``delta`` terms pull
    it off a little; :func:`~densepac.ops.consistency.source_consistency` afterwards makes it
    exact), is smooth within the guide's regions and may change abruptly across their edges.

    Args:
        depth_init: (N, 1, H, W) dense metres, the starting estimate ``x0`` (e.g. bicubic or
            a model's output).
        depth_lr: (N, 1, H/s, W/s) source metres; 0 or non-finite = missing.
        guide: (N, Cg, H, W) guide, RGB in [0, 1].
        sampling: ``"area"`` or ``"point"``: what a source pixel stands for.
        lam: smoothness weight (> 0), relative to one HR pixel's data weight.
        mu: feature distance (> 0) at which an edge weight falls to 1/e.
        depth_weight: weight (>= 0) of the normalised bicubic source among the features.
        delta: pull (> 0) towards ``depth_init``; keeps the system well-posed far from data.
        max_iter: most CG iterations (>= 1); tol: relative residual (> 0) that stops them.
        weight_floor: smallest edge weight, as a fraction of ``lam`` (in [0, 1)); None: 1e-3
            for area sampling, 0 for point sampling (see the module docstring).
        clamp: clamp the result to the valid source range of each pixel's 3x3 source
            neighbourhood (pixels with no valid source nearby are left as solved).
        return_iterations: also return the iterations each sample took, (N,) int64.

    Returns:
        (N, 1, H, W) metres in the dtype and device of ``depth_init`` (and the iterations).

    Raises:
        InputError: wrong shapes, sizes not one integer multiple, unknown sampling,
            out-of-range parameters.
    """
    s = check_source_pair(depth_init, depth_lr, sampling, hr_name="depth_init")
    if (
        not isinstance(guide, torch.Tensor)
        or guide.dim() != 4
        or guide.shape[0] != depth_init.shape[0]
        or guide.shape[-2:] != depth_init.shape[-2:]
    ):
        shape = tuple(guide.shape) if isinstance(guide, torch.Tensor) else type(guide).__name__
        raise InputError(
            f"guide must be (N, C, H, W) with N, H, W of depth_init {tuple(depth_init.shape)}, got {shape}"
        )
    for name, value in (("lam", lam), ("mu", mu), ("delta", delta), ("tol", tol)):
        if not value > 0:
            raise InputError(f"{name}={value} must be > 0")
    if not depth_weight >= 0:
        raise InputError(f"depth_weight={depth_weight} must be >= 0")
    floor = (AREA_WEIGHT_FLOOR if sampling == "area" else 0.0) if weight_floor is None else weight_floor
    if not 0 <= floor < 1:
        raise InputError(f"weight_floor={weight_floor} must lie in [0, 1)")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise InputError(f"max_iter={max_iter!r} must be a positive integer")

    dtype = depth_init.dtype
    valid = valid_mask(depth_lr)
    lr = torch.where(valid, depth_lr, torch.zeros_like(depth_lr)).to(dtype)
    lo, span = _normalisation(lr, valid)
    y = torch.where(valid, (lr - lo) / span, torch.zeros_like(lr))
    z0 = (depth_init - lo) / span

    feats = _features(y, valid, guide.to(dtype), depth_weight)
    dx = (feats[..., 1:] - feats[..., :-1]).pow(2).sum(1, keepdim=True) / mu**2
    dy = (feats[..., 1:, :] - feats[..., :-1, :]).pow(2).sum(1, keepdim=True) / mu**2
    wx = lam * (floor + (1 - floor) * torch.exp(-dx))
    wy = lam * (floor + (1 - floor) * torch.exp(-dy))
    b = _data_rhs(y, valid.to(dtype), s, sampling) + delta * z0
    z, iterations = _GraphSolve.apply(b, wx, wy, z0.detach(), valid, s, sampling, delta, max_iter, tol)
    out = lo + span * z
    if clamp:
        out = clamp_to_source_range(out, lr, valid, s)
    return (out, iterations) if return_iterations else out


def clamp_to_source_range(
    depth_hr: torch.Tensor, depth_lr: torch.Tensor, valid: torch.Tensor, scale: int, radius: int = 1
) -> torch.Tensor:
    """Clamp each HR pixel to [min, max] of the valid source pixels within ``radius`` of its own.

    Pixels whose neighbourhood holds no valid source pixel are returned as they are.
    """
    big = torch.finfo(depth_hr.dtype).max
    k = 2 * radius + 1
    lr = depth_lr.to(depth_hr.dtype)
    hi = F.max_pool2d(torch.where(valid, lr, torch.full_like(lr, -big)), k, 1, radius)
    lo = -F.max_pool2d(torch.where(valid, -lr, torch.full_like(lr, -big)), k, 1, radius)
    found = F.max_pool2d(valid.to(depth_hr.dtype), k, 1, radius) > 0
    lo, hi, found = (_to_hr(v, scale) for v in (lo, hi, found.to(depth_hr.dtype)))
    return torch.where(found > 0, torch.minimum(torch.maximum(depth_hr, lo), hi), depth_hr)


class GraphRefine(nn.Module):
    """Module form of :func:`graph_refine`: ``forward(depth_init, depth_lr, guide)``."""

    def __init__(
        self,
        sampling: str,
        lam: float = 0.1,
        mu: float = 0.05,
        depth_weight: float = 0.5,
        delta: float = 1e-4,
        max_iter: int = 2000,
        tol: float = 1e-7,
        weight_floor: float | None = None,
        clamp: bool = True,
    ) -> None:
        super().__init__()
        if sampling not in SAMPLINGS:
            raise InputError(f"sampling={sampling!r} is unknown; use one of {', '.join(map(repr, SAMPLINGS))}")
        self.sampling, self.lam, self.mu, self.depth_weight = sampling, lam, mu, depth_weight
        self.delta, self.max_iter, self.tol = delta, max_iter, tol
        self.weight_floor, self.clamp = weight_floor, clamp

    def forward(self, depth_init: torch.Tensor, depth_lr: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        return graph_refine(
            depth_init,
            depth_lr,
            guide,
            self.sampling,
            self.lam,
            self.mu,
            self.depth_weight,
            self.delta,
            self.max_iter,
            self.tol,
            self.weight_floor,
            self.clamp,
        )

    def extra_repr(self) -> str:
        return (
            f"sampling={self.sampling!r}, lam={self.lam}, mu={self.mu}, depth_weight={self.depth_weight}, "
            f"delta={self.delta}, max_iter={self.max_iter}, tol={self.tol}, weight_floor={self.weight_floor}, "
            f"clamp={self.clamp}"
        )
