"""Depth models: ``forward(depth_lr (N,1,h,w) metres, guide (N,3,H,W) RGB in [0,1]) -> (N,1,H,W) metres``."""

from densepac.depth.models.base import DepthModel, NormalizedDepthModel, infer_scale
from densepac.depth.models.baselines import Bicubic, GuidedFilter, JointBilateral
from densepac.depth.models.joint_upsample import PacJointUpsample
from densepac.depth.models.learned_jbu import LearnedJBU

__all__ = [
    "Bicubic",
    "DepthModel",
    "GuidedFilter",
    "JointBilateral",
    "LearnedJBU",
    "NormalizedDepthModel",
    "PacJointUpsample",
    "infer_scale",
]
