"""Filling missing depth before interpolation, so holes never leak zeros into the output."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def valid_mask(depth: torch.Tensor) -> torch.Tensor:
    """Boolean mask of measured pixels: finite and strictly positive (metres)."""
    return torch.isfinite(depth) & (depth > 0)


def fill_holes(depth: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Push-pull hole filling: every missing pixel gets a smooth average of its valid surroundings.

    Args:
        depth: (N, 1, H, W) metres, missing where ``valid`` is False.
        valid: (N, 1, H, W) bool; default :func:`valid_mask` of ``depth``.

    Returns:
        (N, 1, H, W) with valid pixels unchanged; an image without any valid pixel stays 0.
    """
    if valid is None:
        valid = valid_mask(depth)
    w = valid.to(depth.dtype)
    d = torch.where(valid, depth, torch.zeros_like(depth))
    pyramid = [(d, w)]
    for _ in range(math.ceil(math.log2(max(depth.shape[-2:]))) if max(depth.shape[-2:]) > 1 else 0):
        d, w = F.avg_pool2d(d, 2, ceil_mode=True), F.avg_pool2d(w, 2, ceil_mode=True)
        pyramid.append((d, w))
    eps = torch.finfo(depth.dtype).tiny
    filled = d / w.clamp_min(eps)
    for d, w in reversed(pyramid[:-1]):
        up = F.interpolate(filled, size=d.shape[-2:], mode="bilinear", align_corners=False)
        # w is the fraction of valid pixels under each cell: trust measurements where there are some.
        alpha = w.clamp(0, 1)
        filled = alpha * (d / w.clamp_min(eps)) + (1 - alpha) * up
    return filled
