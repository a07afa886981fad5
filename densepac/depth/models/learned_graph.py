"""Graph-regularised depth upsampling whose edge features are learned, trained through the solver.

The training-free refinement (:func:`densepac.ops.graph_refine`, de Lutio et al. CVPR 2022)
solves for the HR depth that agrees with the source under its sampling and is smooth where
its features are alike; its features are the guide's colours and the bicubic depth, so every
colour edge is a candidate depth edge, texture included. Here a small U-Net looks at the
guide and the bicubic depth and predicts, per pixel, a scale on those feature distances
(below 1 where colour edges are texture, above 1 where they are depth edges) and a few
feature channels of its own (depth edges without a colour edge), trained end to end
through the solve (implicit gradients), while the solver keeps what makes the method hold
on real scenes: the agreement with the source and the guide's edges. The scale starts at 1
and the channels near 0, so an untrained model is (almost exactly) the training-free
refinement.

The solve needs what an LR pixel stands for: ``sampling`` ("point" or "area"; "auto"
estimates it per sample from the map, :func:`densepac.depth.sampling.estimate_sampling`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from densepac.depth.models.base import DepthModel
from densepac.depth.models.learned_jbu import _PixelFeatures
from densepac.depth.sampling import SAMPLING_CHOICES, refine_batch
from densepac.errors import InputError
from densepac.models.blocks import IMAGENET_MEAN, IMAGENET_STD
from densepac.models.registry import register_model
from densepac.ops.fill import fill_holes, valid_mask
from densepac.ops.refine import guide_features


class LearnedGraph(DepthModel):
    """Graph least squares on features ``[guide, depth_weight * bicubic] + U-Net(guide, bicubic)``.

    Args:
        scale: upsampling factor.
        width: U-Net width at full resolution; feat_channels: learned feature channels.
        lam, mu, depth_weight: the refinement's parameters (:func:`~densepac.ops.graph_refine`).
        sampling: default for ``forward``'s ``sampling``.
        tol: CG tolerance at inference; training solves to ``train_tol`` (faster, and the
            gradient does not need more).
    """

    #: The model solves the refinement itself; inference does not run it again.
    refines = True

    def __init__(
        self,
        scale: int = 8,
        width: int = 16,
        feat_channels: int = 4,
        lam: float = 0.1,
        mu: float = 0.05,
        depth_weight: float = 0.5,
        sampling: str = "auto",
        tol: float = 1e-7,
        train_tol: float = 1e-5,
    ) -> None:
        super().__init__()
        if sampling not in SAMPLING_CHOICES:
            raise InputError(f"sampling={sampling!r} is unknown; use one of {', '.join(SAMPLING_CHOICES)}")
        self.scale, self.scales = scale, (scale,)
        self.lam, self.mu, self.depth_weight = lam, mu, depth_weight
        self.sampling, self.tol, self.train_tol = sampling, tol, train_tol
        # A solve reaches far, but its influence decays over a few LR pixels.
        self.tile_margin = 16
        # Channel 0: log edge scale (zero: scale 1); the others are compared between pixels,
        # so they start small, not zero (their gradient vanishes at h = 0).
        self.features = _PixelFeatures(3 + 1, width, 1 + feat_channels, head_std=0.01)
        with torch.no_grad():
            self.features.head.weight[0].zero_()
        self.register_buffer("rgb_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def edge_features(self, depth_lr: torch.Tensor, guide: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (N, 3 + 1 + feat_channels, H, W), edge scale (N, 1, H, W)) of the graph."""
        base = guide_features(depth_lr, guide, self.depth_weight)
        rgb = (guide - self.rgb_mean) / self.rgb_std
        out = self.features(torch.cat([rgb, base[:, 3:]], 1))
        return torch.cat([base, self.mu * out[:, 1:]], 1), out[:, :1].clamp(-5, 5).exp()

    def forward(self, depth_lr: torch.Tensor, guide: torch.Tensor, sampling: str | None = None) -> torch.Tensor:
        self.check_inputs(depth_lr, guide)
        guide = guide.to(depth_lr.dtype)
        start = F.interpolate(
            fill_holes(depth_lr, valid_mask(depth_lr)), size=guide.shape[-2:], mode="bicubic", align_corners=False
        )
        feats, scale = self.edge_features(depth_lr, guide)
        tol = self.train_tol if self.training else self.tol
        return refine_batch(
            start,
            depth_lr,
            guide,
            sampling or self.sampling,
            lam=self.lam,
            mu=self.mu,
            tol=tol,
            features=feats,
            edge_scale=scale,
        )

    def extra_repr(self) -> str:
        return f"scale={self.scale}, lam={self.lam}, mu={self.mu}, depth_weight={self.depth_weight}"


@register_model
def learned_graph_x4(scale: int = 4, **kwargs: Any) -> LearnedGraph:
    """Graph least squares with learned edge features, trained through the solver (ours) x4."""
    return LearnedGraph(scale=scale, **kwargs)


@register_model
def learned_graph_x8(scale: int = 8, **kwargs: Any) -> LearnedGraph:
    """Graph least squares with learned edge features, trained through the solver (ours) x8."""
    return LearnedGraph(scale=scale, **kwargs)


@register_model
def learned_graph_x16(scale: int = 16, **kwargs: Any) -> LearnedGraph:
    """Graph least squares with learned edge features, trained through the solver (ours) x16."""
    return LearnedGraph(scale=scale, **kwargs)
