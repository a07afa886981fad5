"""Learned joint bilateral upsampling (ours): a sample PAC whose guide features are learned.

Joint bilateral upsampling gives each HR pixel a weighted mean of nearby LR samples, the
weights a spatial gaussian times a color kernel. Nearly all of its error sits at depth
edges, where color alone picks the wrong side. This model keeps the form (so every output
is a convex combination of measured samples, and training starts at joint bilateral) and
learns what the kernel compares:

1. ``z``: plain joint bilateral upsampling (the same op, fixed kernel), the first estimate.
2. A small U-Net sees RGB, ``z`` and bicubic depth at HR and gives pixel features ``h``;
   each sample's features are ``h`` at its position plus a correction from an LR branch that
   sees the sample's depth and validity.
3. :func:`~densepac.ops.sample_pac.sample_pac_upsample` mixes the samples with the kernel
   ``exp(-0.5 ||f_i - g_j||^2)`` over ``f = [rgb / sigma_c, a z, h]``, ``g = [rgb_j / sigma_c,
   a d_j, h_j + l_j]`` and a learned spatial filter: color, depth (trilateral) and learned
   terms, all trained end to end.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from densepac.depth.models.base import NormalizedDepthModel, check_self_ensemble, flip_ensemble
from densepac.errors import InputError
from densepac.models.blocks import conv_stack
from densepac.models.registry import register_model
from densepac.ops.sample_pac import at_samples, gaussian_spatial_logits, sample_pac_upsample


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class _PixelFeatures(nn.Module):
    """Three-level U-Net, full / half / quarter resolution: (N, cin, H, W) -> (N, cout, H, W)."""

    def __init__(self, cin: int, width: int, cout: int, head_std: float = 0.01) -> None:
        super().__init__()
        self.enc0 = _block(cin, width)
        self.enc1 = _block(width, 2 * width, stride=2)
        self.enc2 = _block(2 * width, 2 * width, stride=2)
        self.dec1 = nn.Sequential(nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(inplace=True))
        self.dec0 = nn.Sequential(
            nn.Conv2d(2 * width, width, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Conv2d(width, cout, 1)
        # Small, not zero: the kernel compares h_i with h_j, whose gradient vanishes at h = 0.
        nn.init.normal_(self.head.weight, std=head_std)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e0 = self.enc0(x)
        e1 = self.enc1(e0)
        e2 = self.enc2(e1)
        d1 = self.dec1(e1 + F.interpolate(e2, size=e1.shape[-2:], mode="bilinear", align_corners=False))
        d0 = self.dec0(F.interpolate(d1, size=e0.shape[-2:], mode="bilinear", align_corners=False)) + e0
        return self.head(d0)


class LearnedJBU(NormalizedDepthModel):
    """Joint bilateral upsampling whose kernel features are learned (see the module docstring).

    Args:
        scale: a multiple of 4 (4, 8 and 16 are registered): the U-Net's two stride-2 levels
            then line up on every LR pixel, so tiled inference equals untiled.
        radius: neighbourhood radius in LR samples ((2r+1)^2 samples per pixel); 3 beat 2
            on validation at x4, x8 and x16.
        width: U-Net width at full resolution.
        feat_channels: learned feature channels of the kernel.
        sigma_color: starting color sigma (guide units), as the joint bilateral baseline.
        depth_weight: starting weight ``a`` of the depth (trilateral) term, normalized units.
        feature_std: init std of the learned features' last layer (small: training starts
            near joint bilateral upsampling).
        refine: add a residual head (3 convs at HR, last one zero-initialised) after the
            mixing, for what a convex combination of samples cannot express (slanted
            surfaces between samples, thin structures without a sample).
        self_ensemble: in eval mode, the mean over 1, 2 or 4 flips of the input
            (:func:`~densepac.depth.models.base.flip_ensemble`); training runs once. 4
            (the default) costs 4 forwards and lowered the x8 test RMSE by 4-10 %
            (scripts/bench_upsample.py); 1 is the fastest.
    """

    def __init__(
        self,
        scale: int = 8,
        radius: int = 3,
        width: int = 16,
        feat_channels: int = 8,
        sigma_color: float = 0.1,
        depth_weight: float = 0.1,
        feature_std: float = 0.01,
        refine: bool = False,
        self_ensemble: int = 4,
    ) -> None:
        super().__init__()
        if scale < 4 or scale % 4:
            raise InputError(f"scale must be a multiple of 4, got {scale}")
        self.scale, self.radius, self.self_ensemble = scale, radius, check_self_ensemble(self_ensemble)
        self.scales = (scale,)
        self.sigma_color = sigma_color
        # Receptive field: the U-Net's ~30 HR px plus two neighbourhoods (first estimate, mix).
        self.tile_margin = 2 * radius + math.ceil(32 / scale) + 3
        self.features = _PixelFeatures(3 + 2, width, feat_channels, feature_std)
        self.sample_branch = nn.Sequential(
            nn.Conv2d(feat_channels + 2, 2 * width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, feat_channels, 3, padding=1),
        )
        nn.init.zeros_(self.sample_branch[-1].weight)
        nn.init.zeros_(self.sample_branch[-1].bias)
        self.log_inv_sigma_color = nn.Parameter(torch.tensor(-math.log(sigma_color)))
        self.depth_weight = nn.Parameter(torch.tensor(float(depth_weight)))
        jbu_spatial = gaussian_spatial_logits(scale, radius, float(scale))
        self.spatial = nn.Parameter(jbu_spatial.clone())
        self.register_buffer("jbu_spatial", jbu_spatial, persistent=False)
        self.refine = conv_stack(3 + 2 + feat_channels, width, 1, 3, 3) if refine else None
        if refine:
            nn.init.zeros_(self.refine[-1].weight)
            nn.init.zeros_(self.refine[-1].bias)

    def core(self, dn: torch.Tensor, valid: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """Normalized depth (N,1,h,w) and validity (N,1,h,w) + guide -> normalized HR depth."""
        return flip_ensemble(self._upsample, dn, valid, guide, size=1 if self.training else self.self_ensemble)

    def _upsample(self, dn: torch.Tensor, valid: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        s = self.scale
        guide = guide.to(dn.dtype)
        ok = valid > 0
        g_rgb = at_samples(guide, s)
        z = sample_pac_upsample(
            dn, guide / self.sigma_color, g_rgb / self.sigma_color, self.jbu_spatial, ok, self.radius
        )
        bicubic = F.interpolate(dn, size=guide.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
        rgb = (guide - self.rgb_mean) / self.rgb_std
        h = self.features(torch.cat([rgb, z, bicubic], 1))
        h_j = at_samples(h, s)
        l_j = self.sample_branch(torch.cat([h_j, dn, valid], 1))
        inv_sc, a = self.log_inv_sigma_color.exp(), self.depth_weight
        f = torch.cat([guide * inv_sc, a * z, h], 1)
        g = torch.cat([g_rgb * inv_sc, a * dn, h_j + l_j], 1)
        y = sample_pac_upsample(dn, f, g, self.spatial, ok, self.radius)
        if self.refine is not None:
            y = y + self.refine(torch.cat([rgb, y, z, h], 1))
        return y

    def extra_repr(self) -> str:
        return (
            f"scale={self.scale}, radius={self.radius}, refine={self.refine is not None}, "
            f"self_ensemble={self.self_ensemble}"
        )


@register_model
def pac_learned_jbu_x4(scale: int = 4, **kwargs: Any) -> LearnedJBU:
    """Learned joint bilateral upsampling, a sample PAC with learned features (ours) x4."""
    return LearnedJBU(scale=scale, **kwargs)


@register_model
def pac_learned_jbu_x8(scale: int = 8, **kwargs: Any) -> LearnedJBU:
    """Learned joint bilateral upsampling, a sample PAC with learned features (ours) x8."""
    return LearnedJBU(scale=scale, **kwargs)


@register_model
def pac_learned_jbu_x16(scale: int = 16, **kwargs: Any) -> LearnedJBU:
    """Learned joint bilateral upsampling, a sample PAC with learned features (ours) x16."""
    return LearnedJBU(scale=scale, **kwargs)
