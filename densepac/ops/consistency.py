"""Source consistency: correct an upsampled depth map so that, sampled the way its
low-resolution source was, it reproduces every valid source pixel.

Two samplings say what an LR pixel ``j`` stands for (HR size = ``s`` x LR size):

- ``"area"``: the mean of its ``s x s`` HR block;
- ``"point"``: the single HR pixel ``(s*i + s//2, s*j + s//2)`` (as
  :func:`densepac.depth.degrade.downsample_point` keeps).

The correction is additive and smooth. The residual ``r = lr - A(hr)`` (``A`` the sampling;
missing source pixels get a push-pull fill of their neighbours' residuals, so they neither
constrain the output nor pull the correction towards 0) is spread by a bilinear interpolant
``P r``: for point sampling the interpolant whose nodes are the sample pixels (exact there
by construction); for area sampling ``P = U (A U)^-1`` with ``U`` bilinear upsampling
(``align_corners=False``), so ``A P = I``. ``A U`` is separable, tridiagonal per axis and
diagonally dominant (eigenvalues in [0.5, 1] per axis), so ``P`` is two small dense
matrices built per call, and the correction is continuous: no blocky seams.
"""

from __future__ import annotations

import torch
from torch import nn

from densepac.errors import InputError
from densepac.ops.fill import fill_holes, valid_mask

__all__ = [
    "SAMPLINGS",
    "SourceConsistency",
    "check_source_pair",
    "sample_as_source",
    "source_consistency",
    "source_consistency_",
]

SAMPLINGS: tuple[str, ...] = ("area", "point")


def check_source_pair(depth_hr: torch.Tensor, depth_lr: torch.Tensor, sampling: str, hr_name: str = "depth_hr") -> int:
    """Validate an (HR map, LR source, sampling) triple and return the integer scale ``s``.

    Raises:
        InputError: a tensor is not (N, 1, H, W), the batches differ, the HR size is not
            the same integer multiple of the LR size on both axes, or ``sampling`` is unknown.
    """
    if sampling not in SAMPLINGS:
        raise InputError(f"sampling={sampling!r} is unknown; use one of {', '.join(map(repr, SAMPLINGS))}")
    for name, t in ((hr_name, depth_hr), ("depth_lr", depth_lr)):
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4 or t.shape[1] != 1 or t.numel() == 0:
            raise InputError(f"{name} must be a non-empty (N, 1, H, W) depth map, got shape {tuple(t.shape)}")
    (n, _, hh, ww), (m, _, h, w) = depth_hr.shape, depth_lr.shape
    if n != m:
        raise InputError(f"{hr_name} has batch {n} but depth_lr has {m}; pass one source per map")
    if hh % h or ww % w or hh // h != ww // w:
        raise InputError(
            f"{hr_name} size {hh}x{ww} is not one integer multiple of depth_lr size {h}x{w}; "
            "crop the HR map (or the guide) to scale * the LR size"
        )
    return hh // h


def sample_as_source(x: torch.Tensor, scale: int, sampling: str) -> torch.Tensor:
    """HR map (N, C, h*s, w*s) -> (N, C, h, w), sampled as the source was.

    ``"area"``: each ``s x s`` block's mean; ``"point"``: pixel ``(s*i + s//2, s*j + s//2)``.
    """
    s = int(scale)
    if sampling == "point":
        return x[..., s // 2 :: s, s // 2 :: s]
    n, c, hh, ww = x.shape
    return x.reshape(n, c, hh // s, s, ww // s, s).mean((3, 5))


def _bilinear_matrix(size: int, scale: int, first: float) -> torch.Tensor:
    """(size*scale, size) float64 linear interpolation along one axis, nodes at HR ``first + s*j``.

    Beyond the first and last node the value is held constant (as ``F.interpolate`` does).
    """
    t = ((torch.arange(size * scale, dtype=torch.float64) - first) / scale).clamp(0, size - 1)
    lo = t.floor().long()
    hi = (lo + 1).clamp_max(size - 1)
    frac = t - lo
    m = torch.zeros(size * scale, size, dtype=torch.float64)
    rows = torch.arange(size * scale)
    m[rows, lo] += 1 - frac
    m[rows, hi] += frac
    return m


def _spread_matrix(size: int, scale: int, sampling: str) -> torch.Tensor:
    """(size*scale, size) float64 ``P`` with ``A P = I`` along one axis (see the module docstring)."""
    if sampling == "point":
        return _bilinear_matrix(size, scale, float(scale // 2))
    up = _bilinear_matrix(size, scale, (scale - 1) / 2)
    mean = up.reshape(size, scale, size).mean(1)  # A U: block means of the interpolant
    return torch.linalg.solve(mean, up.T).T  # A U is symmetric, so U (A U)^-1 = (solve(A U, U^T))^T


def source_consistency(depth_hr: torch.Tensor, depth_lr: torch.Tensor, sampling: str) -> torch.Tensor:
    """Make ``depth_hr`` reproduce the valid pixels of its source ``depth_lr`` when sampled.

    After the call, for every valid LR pixel (finite and > 0): with ``"area"`` the ``s x s``
    block mean of the output equals it, with ``"point"`` the output pixel
    ``(s*i + s//2, s*j + s//2)`` equals it, both to float precision. Missing LR pixels
    constrain nothing. The correction added is a smooth (piecewise bilinear) field, so the
    output has no block seams; it is not clamped, so a source far from ``depth_hr`` may
    push single pixels outside the source's depth range. Linear in both inputs, hence
    differentiable; a map already consistent is returned unchanged (to float precision).

    Args:
        depth_hr: (N, 1, H, W) dense, finite metres (e.g. a model's output).
        depth_lr: (N, 1, H/s, W/s) source metres; 0 or non-finite = missing.
        sampling: ``"area"`` or ``"point"``: what an LR pixel stands for.

    Returns:
        (N, 1, H, W) metres, dtype and device of ``depth_hr``.

    Raises:
        InputError: wrong shapes, sizes that are not one integer multiple, unknown sampling.
    """
    s = check_source_pair(depth_hr, depth_lr, sampling)
    h, w = depth_lr.shape[-2:]
    residual = _residual(sample_as_source(depth_hr, s, sampling), depth_lr)
    like = {"dtype": depth_hr.dtype, "device": depth_hr.device}
    py = _spread_matrix(h, s, sampling).to(**like)
    px = _spread_matrix(w, s, sampling).to(**like)
    return depth_hr + py @ residual @ px.T


def _residual(sampled: torch.Tensor, depth_lr: torch.Tensor) -> torch.Tensor:
    """``depth_lr - sampled`` where the source is valid, holes filled from their neighbours, in ``sampled``'s dtype."""
    valid = valid_mask(depth_lr)
    lr = torch.where(valid, depth_lr, torch.zeros_like(depth_lr)).to(sampled.dtype)
    return fill_holes(torch.where(valid, lr - sampled, torch.zeros_like(lr)), valid)


@torch.no_grad()
def source_consistency_(depth_hr: torch.Tensor, depth_lr: torch.Tensor, sampling: str, rows: int = 16) -> torch.Tensor:
    """In-place :func:`source_consistency` for inference on large maps; returns ``depth_hr``.

    The residual and the correction are computed in float64 a band of ``rows`` LR rows at a
    time and added to ``depth_hr`` in its own dtype, so the extra memory is a few bands,
    not several copies of the HR map. Not differentiable (it writes into ``depth_hr``).
    """
    s = check_source_pair(depth_hr, depth_lr, sampling)
    if rows < 1:
        raise InputError(f"rows must be positive, got {rows}")
    h, w = depth_lr.shape[-2:]
    bands = [slice(i * s, min(i + rows, h) * s) for i in range(0, h, rows)]
    sampled = torch.cat([sample_as_source(depth_hr[..., b, :].double(), s, sampling) for b in bands], dim=-2)
    residual = _residual(sampled, depth_lr)
    like = {"dtype": torch.float64, "device": depth_hr.device}
    py = _spread_matrix(h, s, sampling).to(**like)
    px = _spread_matrix(w, s, sampling).to(**like)
    right = residual @ px.T  # (N, 1, h, W): the LR rows already spread along x
    for b in bands:
        depth_hr[..., b, :] += (py[b] @ right).to(depth_hr.dtype)
    return depth_hr


class SourceConsistency(nn.Module):
    """Module form of :func:`source_consistency`: ``forward(depth_hr, depth_lr)``."""

    def __init__(self, sampling: str) -> None:
        super().__init__()
        if sampling not in SAMPLINGS:
            raise InputError(f"sampling={sampling!r} is unknown; use one of {', '.join(map(repr, SAMPLINGS))}")
        self.sampling = sampling

    def forward(self, depth_hr: torch.Tensor, depth_lr: torch.Tensor) -> torch.Tensor:
        return source_consistency(depth_hr, depth_lr, self.sampling)

    def extra_repr(self) -> str:
        return f"sampling={self.sampling!r}"
