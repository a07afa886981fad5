"""Sample PAC upsampling: a normalized transposed PAC whose samples carry their own features.

Each high-resolution pixel ``i`` mixes the ``(2r+1)^2`` low-resolution samples ``j`` around
its LR cell with weights

    w_ij ∝ valid_j · exp(S[j - cell(i), phase(i)]) · exp(-0.5 ||f_i - g_j||^2)

i.e. the PAC kernel ``K(f_i, g_j)`` times a spatially shared filter ``S`` (one tap per
neighbour and sub-pixel phase, as a stride-``s`` transposed convolution has), normalized
over the valid samples. With ``f`` the HR image divided by ``sigma_color``, ``g`` the image at
the sample positions and ``S`` a log-gaussian it is joint bilateral upsampling; learned
``f``/``g`` let a network decide which samples belong to a pixel's surface.

The weights are a softmax over neighbours: ``||f_i||^2`` is common to all of a pixel's
neighbours and cancels, so only ``f_i . g_j - 0.5 ||g_j||^2`` is computed, one batched
matrix product per LR cell and no (N, C, K^2, H, W) tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from densepac.errors import InputError

__all__ = ["sample_pac_upsample", "gaussian_spatial_logits", "lr_neighbours", "at_samples"]

# Added to the logit of a missing sample: exp(-1e4) is 0 in every float type, yet when
# every neighbour is missing the softmax still mixes them (the caller's hole filling).
_MISSING = 1e4


def lr_neighbours(x: torch.Tensor, radius: int) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, (2r+1)^2, h, w): each cell's neighbours, edge-replicated at borders."""
    n, c, h, w = x.shape
    k = 2 * radius + 1
    xp = F.pad(x, (radius,) * 4, mode="replicate") if radius else x
    return F.unfold(xp, k).view(n, c, k * k, h, w)


def at_samples(x: torch.Tensor, scale: int) -> torch.Tensor:
    """HR map (N, C, h*s, w*s) -> (N, C, h, w): its values where the LR samples sit.

    The pixel ``s * j + (s - 1) // 2`` of each cell, where joint bilateral upsampling's
    transposed PAC puts sample ``j``: with these as sample features, :func:`sample_pac_upsample`
    equals :func:`~densepac.ops.guided.joint_bilateral_upsample`.
    """
    off = (scale - 1) // 2
    return x[..., off::scale, off::scale]


def gaussian_spatial_logits(
    scale: int, radius: int, sigma: float, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """Log of a gaussian of the distance (HR px) from pixel to sample centre: ((2r+1)^2, s, s).

    Entry ``[t, a, b]`` is for neighbour ``t`` (row-major over the (2r+1)^2 window, centre
    = own cell) and a pixel at sub-pixel position ``(a, b)`` of its cell. Sample centres are
    at ``s * j + (s - 1) / 2`` in HR pixels (pixel-area centres, align_corners=False).
    """
    s, k = int(scale), 2 * radius + 1
    off = torch.arange(k, dtype=dtype, device=device) - radius  # neighbour offset in cells
    sub = torch.arange(s, dtype=dtype, device=device) - (s - 1) / 2  # pixel offset from own centre
    d = off[:, None] * s - sub[None, :]  # (k, s): sample centre minus pixel, one axis
    d2 = d[:, None, :, None] ** 2 + d[None, :, None, :] ** 2  # (k, k, s, s)
    return (-0.5 * d2 / sigma**2).reshape(k * k, s, s)


def sample_pac_upsample(
    values: torch.Tensor,
    feats_hr: torch.Tensor,
    feats_lr: torch.Tensor,
    spatial_logits: torch.Tensor,
    valid: torch.Tensor | None = None,
    radius: int = 2,
) -> torch.Tensor:
    """Upsample LR ``values`` by a normalized PAC over the neighbouring LR samples.

    Args:
        values: (N, Cv, h, w) what is mixed (e.g. hole-filled depth).
        feats_hr: (N, C, h*s, w*s) pixel features ``f_i``.
        feats_lr: (N, C, h, w) sample features ``g_j``.
        spatial_logits: ((2r+1)^2, s, s) log spatial filter (:func:`gaussian_spatial_logits`).
        valid: (N, 1, h, w) bool, samples that may be used (None: all); when every
            neighbour of a pixel is missing, they are mixed anyway.
        radius: neighbourhood radius in LR cells.

    Returns:
        (N, Cv, h*s, w*s), each pixel a convex combination of its neighbours' values.
    """
    n, cv, h, w = values.shape
    c, hh, ww = feats_hr.shape[1:]
    k2 = (2 * radius + 1) ** 2
    if feats_lr.shape != (n, c, h, w):
        raise InputError(f"feats_lr must be {(n, c, h, w)}, got {tuple(feats_lr.shape)}")
    if feats_hr.shape[0] != n or hh % h or ww % w or hh // h != ww // w:
        raise InputError(f"feats_hr {tuple(feats_hr.shape)} is not an integer upscale of values {tuple(values.shape)}")
    s = hh // h
    if spatial_logits.shape != (k2, s, s):
        raise InputError(
            f"spatial_logits must be {(k2, s, s)} for scale {s}, radius {radius}, got {tuple(spatial_logits.shape)}"
        )
    # Softmax and sums in at least float32: half precision loses the small weights.
    dtype = torch.promote_types(values.dtype, torch.float32)
    # Laid out per LR cell (N, h, w, ...) with the neighbours last: two batched matrix
    # products and a softmax over the last axis, which every runtime does fast (ONNX too).
    g = lr_neighbours(feats_lr.to(dtype), radius)  # (N, C, K2, h, w)
    f = feats_hr.to(dtype).reshape(n, c, h, s, w, s).permute(0, 2, 4, 3, 5, 1).reshape(n, h, w, s * s, c)
    bias = -0.5 * (g * g).sum(1)  # (N, K2, h, w)
    # Replicated border cells are copies, not samples: they count as missing.
    inside = F.unfold(F.pad(values.new_ones((1, 1, h, w), dtype=dtype), (radius,) * 4), 2 * radius + 1)
    inside = inside.view(1, k2, h, w)
    if valid is not None:
        inside = inside * lr_neighbours(valid.to(dtype), radius)[:, 0]
    bias = bias - _MISSING * (1 - inside)
    # The bias rides in the product as one more feature (1 for every pixel), and both operands
    # are made contiguous: batched matmul on strided operands copies each cell's matrix (2.5x slower on CPU).
    f = torch.cat([f, f.new_ones(n, h, w, s * s, 1)], -1)
    g = torch.cat([g, bias[:, None]], 1).permute(0, 3, 4, 1, 2).contiguous()  # (N, h, w, C + 1, K2)
    logits = f @ g  # (N, h, w, s*s, K2)
    logits += spatial_logits.to(dtype).reshape(k2, s * s).T
    weights = torch.softmax(logits, dim=-1)
    v = lr_neighbours(values.to(dtype), radius).permute(0, 3, 4, 2, 1).contiguous()  # (N, h, w, K2, Cv)
    out = (weights @ v).view(n, h, w, s, s, cv).permute(0, 5, 1, 3, 2, 4)
    return out.reshape(n, cv, hh, ww).to(values.dtype)
