"""Classical guided baselines: guided filter and joint bilateral upsampling of depth, and
guided-filter refinement of segmentation scores.

The guided filter is kornia's; joint bilateral upsampling is a normalized transposed PAC with
a fixed spatial gaussian, weighting only measured samples, computed as a sample PAC (one
term per neighbouring LR cell, :mod:`densepac.ops.sample_pac`) rather than one per filter tap.
Each function takes the hole-filled LR depth and the valid range (``depth_range``), which
are whole-image quantities, so that tiles of one image are processed consistently.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.filters import guided_blur
from torch import nn

from densepac.errors import InputError
from densepac.ops.sample_pac import at_samples, gaussian_spatial_logits, sample_pac_upsample


def depth_range(depth: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (min, max) of the valid depths, each (N, 1, 1, 1); (0, 0) when none is valid."""
    big = torch.finfo(depth.dtype).max
    lo = torch.where(valid, depth, torch.full_like(depth, big)).amin((1, 2, 3), keepdim=True)
    hi = torch.where(valid, depth, torch.zeros_like(depth)).amax((1, 2, 3), keepdim=True)
    return torch.minimum(lo, hi), hi


def upsample_filled(
    filled: torch.Tensor, size: tuple[int, int], lo: torch.Tensor, hi: torch.Tensor, mode: str = "bicubic"
) -> torch.Tensor:
    """Interpolate hole-filled (N, 1, h, w) metres to ``size`` (align_corners=False), clamped to [lo, hi].

    The clamp matters: bicubic overshoots at depth edges and would otherwise invent negative
    or out-of-range depths.
    """
    up = F.interpolate(filled, size=size, mode=mode, align_corners=False)
    return torch.minimum(torch.maximum(up, lo), hi)


def guided_filter_upsample(
    filled: torch.Tensor, guide: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, radius: int, eps: float
) -> torch.Tensor:
    """He et al.'s guided filter of the bicubic-upsampled depth, guided by the HR image.

    Args:
        filled: (N, 1, h, w) hole-filled metres; lo, hi: valid range (broadcastable).
        guide: (N, 3, H, W) RGB in [0, 1].
        radius: window radius in HR pixels; eps: regulariser in squared guide units.
    """
    up = upsample_filled(filled, tuple(guide.shape[-2:]), lo, hi)
    return guided_blur(guide.to(up.dtype), up, 2 * radius + 1, eps)


def joint_bilateral_upsample(
    depth_lr: torch.Tensor,
    valid: torch.Tensor,
    filled: torch.Tensor,
    guide: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    scale: int,
    sigma_spatial: float,
    sigma_color: float,
    radius: int = 2,
) -> torch.Tensor:
    """Joint bilateral upsampling (Kopf et al. 2007) of the measured LR samples.

    ``D(p) = sum_q g_s(|p - q|) g_c(|I_p - I_q|) D_q / sum_q g_s g_c`` over the valid LR samples
    ``q`` within ``radius`` LR pixels, with ``q`` at its pixel-area centre in HR coordinates.
    Where no sample is near (large holes) the hole-filled bicubic value is used.

    Args:
        depth_lr: (N, 1, h, w) metres; valid: its bool mask; filled: hole-filled depth.
        guide: (N, 3, h*scale, w*scale) RGB in [0, 1].
        sigma_spatial: in HR pixels; sigma_color: in guide units.
    """
    s = int(scale)
    dtype = torch.promote_types(depth_lr.dtype, torch.float32)
    feats = guide.to(dtype) / sigma_color
    spatial = gaussian_spatial_logits(s, radius, sigma_spatial, dtype, depth_lr.device)
    out = sample_pac_upsample(filled, feats, at_samples(feats, s), spatial, valid, radius)
    # Pixels with no measured sample within reach keep the hole-filled bicubic value.
    reached = F.max_pool2d(valid.to(dtype), 2 * radius + 1, stride=1, padding=radius) > 0
    reached = reached.repeat_interleave(s, dim=2).repeat_interleave(s, dim=3)
    return torch.where(reached, out, upsample_filled(filled, tuple(guide.shape[-2:]), lo, hi))


def guided_refine(logits: torch.Tensor, image: torch.Tensor, radius: int = 4, eps: float = 1e-2) -> torch.Tensor:
    """Edge-aware smoothing of class probabilities by kornia's guided filter on the image.

    The classic post-processing baseline to a CRF: softmax (N, K, H, W) filtered with the
    image's luminance (N, 3, H, W RGB in [0, 1]) as guide, ``radius`` in pixels, ``eps`` the
    regulariser on luminance variance. Returns log-probabilities (N, K, H, W), usable as logits.
    """
    if logits.dim() != 4 or image.dim() != 4 or logits.shape[-2:] != image.shape[-2:]:
        raise InputError(
            f"logits {tuple(logits.shape)} and image {tuple(image.shape)} must be (N, K, H, W) and "
            "(N, 3, H, W) of one size"
        )
    if radius < 1 or eps <= 0:
        raise InputError(f"radius {radius} must be >= 1 and eps {eps} > 0")
    k = 2 * radius + 1
    probs = guided_blur(image.mean(1, keepdim=True).to(logits.dtype), logits.softmax(1), (k, k), eps)
    return probs.clamp_min(torch.finfo(logits.dtype).tiny).log()


class GuidedRefined(nn.Module):
    """A segmentation model followed by :func:`guided_refine` (no parameters of its own)."""

    task = "segmentation"

    def __init__(self, model: nn.Module, radius: int = 4, eps: float = 1e-2) -> None:
        super().__init__()
        self.model, self.radius, self.eps = model, radius, eps
        self.num_classes = model.num_classes

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return guided_refine(self.model(image), image, self.radius, self.eps)

    def extra_repr(self) -> str:
        return f"radius={self.radius}, eps={self.eps}"
