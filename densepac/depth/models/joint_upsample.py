"""Learned joint depth upsampling with transposed PAC (Su et al., CVPR 2019, section 5.1).

A depth branch encodes the low-resolution depth, a guidance branch turns the RGB image into
adapting features (one slice per upsampling stage), log2(scale) ``PacConvTranspose2d``
stages double the resolution under their slice's guidance, and a final branch predicts depth.

Depth is normalized inside the model by the range of the valid LR samples and restored on
output, so the model takes and returns metres for any depth range.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from densepac.depth.models.base import NormalizedDepthModel
from densepac.errors import InputError
from densepac.models.blocks import conv_stack
from densepac.models.registry import register_model
from densepac.ops import PacConvTranspose2d
from densepac.ops.guided import joint_bilateral_upsample


class PacJointUpsample(NormalizedDepthModel):
    """Joint depth upsampling network with transposed PAC stages.

    Args:
        scale: 2, 4, 8 or 16.
        channels: width of the depth, upsampling and final branches (paper: 32).
        guide_channels: adapting-feature channels per upsampling stage (paper: 16).
        guide_width: hidden width of the guidance branch.
        kernel_size: size of every convolution (paper: 5).
        residual: predict a correction to a classical upsampling (``base``) instead of depth;
            the last layer starts at zero, so the untrained model equals its base.
        base: ``"bicubic"`` (of the hole-filled depth) or ``"joint_bilateral"``, the
            residual's starting point.
        mask_input: give the depth branch the validity mask as a second channel.
        normalize_pac: use normalized PAC in the upsampling stages.
    """

    def __init__(
        self,
        scale: int = 8,
        channels: int = 32,
        guide_channels: int = 16,
        guide_width: int = 32,
        depth_layers: int = 3,
        guide_layers: int = 3,
        final_layers: int = 2,
        kernel_size: int = 5,
        residual: bool = False,
        mask_input: bool = False,
        normalize_pac: bool = False,
        base: str = "bicubic",
    ) -> None:
        super().__init__()
        if scale not in (2, 4, 8, 16):
            raise InputError(f"scale must be 2, 4, 8 or 16, got {scale}")
        if base not in ("bicubic", "joint_bilateral"):
            raise InputError(f"base must be 'bicubic' or 'joint_bilateral', got {base!r}")
        self.scale = scale
        self.scales = (scale,)
        self.stages = int(math.log2(scale))
        # Depth branch reach, plus at most one LR pixel per upsampling stage and for the HR
        # branches and the bicubic residual.
        self.tile_margin = depth_layers * (kernel_size // 2) + self.stages + 3
        self.guide_channels = guide_channels
        self.residual, self.mask_input, self.base = residual, mask_input, base
        k = kernel_size
        self.depth_branch = conv_stack(2 if mask_input else 1, channels, channels, depth_layers, k)
        self.guide_branch = conv_stack(3, guide_width, guide_channels * self.stages, guide_layers, k)
        self.up = nn.ModuleList(
            PacConvTranspose2d(
                channels, channels, k, stride=2, padding=k // 2, output_padding=1, normalize=normalize_pac
            )
            for _ in range(self.stages)
        )
        self.final_branch = conv_stack(channels, channels, 1, final_layers, k)
        if residual:
            nn.init.zeros_(self.final_branch[-1].weight)
            nn.init.zeros_(self.final_branch[-1].bias)

    def core(self, dn: torch.Tensor, valid: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """Normalized depth (N,1,h,w) and validity (N,1,h,w) + guide -> normalized HR depth."""
        x = self.depth_branch(torch.cat([dn, valid], 1) if self.mask_input else dn)
        g = self.guide_branch((guide.to(dn.dtype) - self.rgb_mean) / self.rgb_std)
        h, w = dn.shape[-2:]
        for i, up in enumerate(self.up):
            size = (h * 2 ** (i + 1), w * 2 ** (i + 1))
            gi = g[:, i * self.guide_channels : (i + 1) * self.guide_channels]
            if size != tuple(gi.shape[-2:]):
                gi = F.adaptive_avg_pool2d(gi, size)  # exact pixel areas: HR size is a multiple
            x = F.relu(up(x, gi))
        y = self.final_branch(x)
        if self.residual:
            y = y + self._base(dn, valid, guide)
        return y

    def _base(self, dn: torch.Tensor, valid: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        # In normalized units every valid depth lies in [0, 1]: that is the clamp range.
        if self.base == "bicubic":
            return F.interpolate(dn, size=guide.shape[-2:], mode="bicubic", align_corners=False)
        zero, one = dn.new_zeros(()), dn.new_ones(())
        return joint_bilateral_upsample(
            dn,
            valid > 0,
            dn,
            guide.to(dn.dtype),
            zero,
            one,
            self.scale,
            sigma_spatial=float(self.scale),
            sigma_color=0.1,
        )

    def extra_repr(self) -> str:
        base = f", base={self.base!r}" if self.residual else ""
        return f"scale={self.scale}, residual={self.residual}, mask_input={self.mask_input}{base}"


_LITE_ARCH = dict(channels=16, guide_channels=8, guide_width=16)


_RES_ARCH = dict(residual=True, mask_input=True)


_JBU_ARCH = dict(residual=True, mask_input=True, base="joint_bilateral")


@register_model
def pac_jointupsample_x4(scale: int = 4, **kwargs: Any) -> PacJointUpsample:
    """PAC joint upsampling, the paper's architecture x4."""
    return PacJointUpsample(scale=scale, **kwargs)


@register_model
def pac_jointupsample_x8(scale: int = 8, **kwargs: Any) -> PacJointUpsample:
    """PAC joint upsampling, the paper's architecture x8."""
    return PacJointUpsample(scale=scale, **kwargs)


@register_model
def pac_jointupsample_x16(scale: int = 16, **kwargs: Any) -> PacJointUpsample:
    """PAC joint upsampling, the paper's architecture x16."""
    return PacJointUpsample(scale=scale, **kwargs)


@register_model
def pac_jointupsample_lite_x4(scale: int = 4, **kwargs: Any) -> PacJointUpsample:
    """PAC joint upsampling, thin (16 channels, 8 guide channels) x4."""
    return PacJointUpsample(scale=scale, **{**_LITE_ARCH, **kwargs})


@register_model
def pac_jointupsample_lite_x8(scale: int = 8, **kwargs: Any) -> PacJointUpsample:
    """PAC joint upsampling, thin (16 channels, 8 guide channels) x8."""
    return PacJointUpsample(scale=scale, **{**_LITE_ARCH, **kwargs})


@register_model
def pac_jointupsample_lite_x16(scale: int = 16, **kwargs: Any) -> PacJointUpsample:
    """PAC joint upsampling, thin (16 channels, 8 guide channels) x16."""
    return PacJointUpsample(scale=scale, **{**_LITE_ARCH, **kwargs})


@register_model
def pac_jointupsample_res_x4(scale: int = 4, **kwargs: Any) -> PacJointUpsample:
    """PAC joint upsampling + bicubic residual and hole-mask input (ours) x4."""
    return PacJointUpsample(scale=scale, **{**_RES_ARCH, **kwargs})


@register_model
def pac_jointupsample_res_x8(scale: int = 8, **kwargs: Any) -> PacJointUpsample:
    """PAC joint upsampling + bicubic residual and hole-mask input (ours) x8."""
    return PacJointUpsample(scale=scale, **{**_RES_ARCH, **kwargs})


@register_model
def pac_jointupsample_res_x16(scale: int = 16, **kwargs: Any) -> PacJointUpsample:
    """PAC joint upsampling + bicubic residual and hole-mask input (ours) x16."""
    return PacJointUpsample(scale=scale, **{**_RES_ARCH, **kwargs})


@register_model
def pac_jointupsample_jbu_x4(scale: int = 4, **kwargs: Any) -> PacJointUpsample:
    """PAC joint upsampling refining joint bilateral upsampling (ours) x4."""
    return PacJointUpsample(scale=scale, **{**_JBU_ARCH, **kwargs})


@register_model
def pac_jointupsample_jbu_x8(scale: int = 8, **kwargs: Any) -> PacJointUpsample:
    """PAC joint upsampling refining joint bilateral upsampling (ours) x8."""
    return PacJointUpsample(scale=scale, **{**_JBU_ARCH, **kwargs})


@register_model
def pac_jointupsample_jbu_x16(scale: int = 16, **kwargs: Any) -> PacJointUpsample:
    """PAC joint upsampling refining joint bilateral upsampling (ours) x16."""
    return PacJointUpsample(scale=scale, **{**_JBU_ARCH, **kwargs})
