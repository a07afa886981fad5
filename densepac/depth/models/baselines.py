"""Classical depth upsampling baselines as registry models (no learned parameters)."""

from __future__ import annotations

import torch

from densepac.check import check_choice
from densepac.depth.models.base import DepthModel
from densepac.depth.sampling import SAMPLING_CHOICES, refine_batch
from densepac.models.registry import register_model
from densepac.ops.fill import fill_holes, valid_mask
from densepac.ops.guided import depth_range, guided_filter_upsample, joint_bilateral_upsample, upsample_filled


class _Baseline(DepthModel):
    """Baselines share the whole-image step: hole filling and the valid depth range."""

    tile_margin = 4  # bicubic reach (2 LR px) plus the filters' radius below

    def forward(self, depth_lr: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        self.check_inputs(depth_lr, guide)
        return self.core(*self.prepare(depth_lr)[0], guide)

    def prepare(self, depth_lr: torch.Tensor):
        valid = valid_mask(depth_lr)
        lo, hi = depth_range(depth_lr, valid)
        # The range is expanded to LR maps so that tiles can slice it like the other inputs.
        return [
            depth_lr,
            valid,
            fill_holes(depth_lr, valid),
            lo.expand_as(depth_lr),
            hi.expand_as(depth_lr),
        ], lambda y: y

    def scale_of(self, depth_lr: torch.Tensor, guide: torch.Tensor) -> int:
        # A plain int even for sizes exported as symbols (the guide is a fixed multiple of the LR
        # size there, so the ratio is a constant): radii and kernel sizes must be ints.
        return int(guide.shape[-1] // depth_lr.shape[-1])


@register_model("bicubic")
class Bicubic(_Baseline):
    """Bicubic interpolation of the hole-filled depth (no guidance)."""

    def core(self, depth_lr, valid, filled, lo, hi, guide):
        return upsample_filled(filled, tuple(guide.shape[-2:]), lo[..., :1, :1], hi[..., :1, :1])


@register_model("guided_filter")
class GuidedFilter(_Baseline):
    """Guided filter (He et al.) of the bicubic upsampling, guided by the RGB image.

    Args:
        radius: window radius in LR pixels (scaled by the upsampling factor).
        eps: regulariser in squared RGB units (RGB in [0, 1]).
    """

    def __init__(self, radius: float = 1.0, eps: float = 1e-3) -> None:
        super().__init__()
        self.radius, self.eps = radius, eps
        self.tile_margin = 4 + int(radius)

    def core(self, depth_lr, valid, filled, lo, hi, guide):
        r = max(1, round(self.radius * self.scale_of(depth_lr, guide)))
        return guided_filter_upsample(filled, guide, lo[..., :1, :1], hi[..., :1, :1], r, self.eps)

    def extra_repr(self) -> str:
        return f"radius={self.radius}, eps={self.eps}"


@register_model("joint_bilateral")
class JointBilateral(_Baseline):
    """Joint bilateral upsampling (Kopf et al.): color and position kernel over the LR samples.

    Args:
        sigma_spatial: spatial sigma in LR pixels.
        sigma_color: color sigma in RGB units (RGB in [0, 1]).
        radius: window radius in LR pixels.
    """

    def __init__(self, sigma_spatial: float = 1.0, sigma_color: float = 0.1, radius: int = 2) -> None:
        super().__init__()
        self.sigma_spatial, self.sigma_color, self.radius = sigma_spatial, sigma_color, radius
        self.tile_margin = 4 + radius

    def core(self, depth_lr, valid, filled, lo, hi, guide):
        s = self.scale_of(depth_lr, guide)
        return joint_bilateral_upsample(
            depth_lr,
            valid,
            filled,
            guide,
            lo[..., :1, :1],
            hi[..., :1, :1],
            s,
            self.sigma_spatial * s,
            self.sigma_color,
            self.radius,
        )

    def extra_repr(self) -> str:
        return f"sigma_spatial={self.sigma_spatial}, sigma_color={self.sigma_color}, radius={self.radius}"


@register_model("graph_sr")
class GraphSR(_Baseline):
    """Graph-regularised least squares from the bicubic start (de Lutio et al. 2022), training-free.

    The HR depth that agrees with the source under its sampling and is smooth where the
    guide is (:func:`~densepac.ops.graph_refine`). It needs what an LR pixel stands for:
    ``forward(depth_lr, guide, sampling=None)`` takes ``"point"``, ``"area"`` or ``"auto"``
    (estimated per sample; None: the model's ``sampling``).

    Args:
        lam, mu, depth_weight: the refinement's parameters (chosen on procedural scenes).
        sampling: default for ``forward``.
    """

    #: The model solves the refinement itself; inference does not run it again.
    refines = True
    tile_margin = 16

    def __init__(self, lam: float = 0.1, mu: float = 0.05, depth_weight: float = 0.5, sampling: str = "auto") -> None:
        super().__init__()
        check_choice(sampling, SAMPLING_CHOICES, "sampling")
        self.lam, self.mu, self.depth_weight, self.sampling = lam, mu, depth_weight, sampling

    def forward(self, depth_lr: torch.Tensor, guide: torch.Tensor, sampling: str | None = None) -> torch.Tensor:
        self.check_inputs(depth_lr, guide)
        return self.core(*self.prepare(depth_lr)[0], guide, sampling=sampling)

    def core(self, depth_lr, valid, filled, lo, hi, guide, sampling=None):
        start = upsample_filled(filled, tuple(guide.shape[-2:]), lo[..., :1, :1], hi[..., :1, :1])
        return refine_batch(
            start,
            depth_lr,
            guide.to(depth_lr.dtype),
            sampling or self.sampling,
            lam=self.lam,
            mu=self.mu,
            depth_weight=self.depth_weight,
        )

    def extra_repr(self) -> str:
        return f"lam={self.lam}, mu={self.mu}, depth_weight={self.depth_weight}, sampling={self.sampling!r}"
