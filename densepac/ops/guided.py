"""Classical guided upsampling baselines: guided filter and joint bilateral upsampling.

The guided filter is kornia's; joint bilateral upsampling is an exact normalised PAC
transposed convolution with a fixed spatial gaussian, weighting only measured samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.filters import guided_blur

from .fill import fill_holes, valid_mask
from .pac import pac_conv_transpose2d


def upsample_filled(depth_lr: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Fill holes, then interpolate (N, 1, h, w) metres to ``size`` (align_corners=False).

    The result is clamped to the range of the measured input, since bicubic overshoots at
    depth edges and would otherwise invent negative or out-of-range depths.
    """
    valid = valid_mask(depth_lr)
    filled = fill_holes(depth_lr, valid)
    up = F.interpolate(filled, size=size, mode=mode, align_corners=False if mode != "nearest" else None)
    big = torch.finfo(depth_lr.dtype).max
    lo = torch.where(valid, depth_lr, torch.full_like(depth_lr, big)).amin((1, 2, 3), keepdim=True)
    hi = torch.where(valid, depth_lr, torch.zeros_like(depth_lr)).amax((1, 2, 3), keepdim=True)
    return torch.minimum(torch.maximum(up, lo.clamp(max=hi)), hi)


def guided_filter_upsample(depth_lr: torch.Tensor, guide: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """He et al.'s guided filter of the bicubic-upsampled depth, guided by the HR image.

    Args:
        depth_lr: (N, 1, h, w) metres, 0/non-finite missing.
        guide: (N, 3, H, W) RGB in [0, 1].
        radius: window radius in HR pixels.
        eps: regulariser in squared guide units.
    """
    up = upsample_filled(depth_lr, tuple(guide.shape[-2:]))
    return guided_blur(guide.to(up.dtype), up, 2 * radius + 1, eps)


def joint_bilateral_upsample(depth_lr: torch.Tensor, guide: torch.Tensor, scale: int, sigma_spatial: float,
                             sigma_color: float, radius: int = 2) -> torch.Tensor:
    """Joint bilateral upsampling (Kopf et al. 2007) of measured LR samples.

    ``D(p) = sum_q g_s(|p - q|) g_c(|I_p - I_q|) D_q / sum_q g_s g_c`` over the LR samples ``q``
    within ``radius`` LR pixels, with ``q`` at its pixel-area centre in HR coordinates.

    Args:
        depth_lr: (N, 1, h, w) metres, 0/non-finite missing.
        guide: (N, 3, h*scale, w*scale) RGB in [0, 1].
        sigma_spatial: spatial sigma in HR pixels; sigma_color in guide units.
    """
    s = int(scale)
    k, pad = (2 * radius + 1) * s, radius * s
    # Distance (HR px) from output pixel to the sample centre for tap t: t - pad - (s - 1) / 2.
    t = torch.arange(k, dtype=depth_lr.dtype, device=depth_lr.device) - pad - (s - 1) / 2
    g = torch.exp(-0.5 * (t / sigma_spatial) ** 2)
    weight = (g[:, None] * g[None, :]).view(1, 1, k, k)
    valid = valid_mask(depth_lr).to(depth_lr.dtype)
    feats = guide.to(depth_lr.dtype) / sigma_color
    num = pac_conv_transpose2d(torch.nan_to_num(depth_lr) * valid, feats, weight, stride=s, padding=pad)
    den = pac_conv_transpose2d(valid, feats, weight, stride=s, padding=pad)
    # Where no sample is near (large holes), fall back to the hole-filled interpolation.
    fallback = upsample_filled(depth_lr, tuple(guide.shape[-2:]))
    tiny = 1e-8
    return torch.where(den > tiny, num / den.clamp_min(tiny), fallback)
