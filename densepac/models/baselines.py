"""Classical depth upsampling baselines as registry models (no learned parameters)."""

from __future__ import annotations

import torch

from ..ops.guided import guided_filter_upsample, joint_bilateral_upsample, upsample_filled
from .depth_base import DepthModel
from .registry import register_model


@register_model("bicubic")
class Bicubic(DepthModel):
    """Bicubic interpolation of the hole-filled depth (no guidance)."""

    def forward(self, depth_lr: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        self.check_inputs(depth_lr, guide)
        return upsample_filled(depth_lr, tuple(guide.shape[-2:]))


@register_model("guided_filter")
class GuidedFilter(DepthModel):
    """Guided filter (He et al.) of the bicubic upsampling, guided by the RGB image.

    Args:
        radius: window radius in LR pixels (scaled by the upsampling factor).
        eps: regulariser in squared RGB units (RGB in [0, 1]).
    """

    def __init__(self, radius: float = 1.0, eps: float = 1e-3) -> None:
        super().__init__()
        self.radius, self.eps = radius, eps

    def forward(self, depth_lr: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        scale = self.check_inputs(depth_lr, guide)
        return guided_filter_upsample(depth_lr, guide, max(1, round(self.radius * scale)), self.eps)

    def extra_repr(self) -> str:
        return f"radius={self.radius}, eps={self.eps}"


@register_model("joint_bilateral")
class JointBilateral(DepthModel):
    """Joint bilateral upsampling (Kopf et al.): colour and position kernel over the LR samples.

    Args:
        sigma_spatial: spatial sigma in LR pixels.
        sigma_color: colour sigma in RGB units (RGB in [0, 1]).
        radius: window radius in LR pixels.
    """

    def __init__(self, sigma_spatial: float = 1.0, sigma_color: float = 0.1, radius: int = 2) -> None:
        super().__init__()
        self.sigma_spatial, self.sigma_color, self.radius = sigma_spatial, sigma_color, radius

    def forward(self, depth_lr: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        scale = self.check_inputs(depth_lr, guide)
        return joint_bilateral_upsample(depth_lr, guide, scale, self.sigma_spatial * scale, self.sigma_color,
                                        self.radius)

    def extra_repr(self) -> str:
        return f"sigma_spatial={self.sigma_spatial}, sigma_color={self.sigma_color}, radius={self.radius}"
