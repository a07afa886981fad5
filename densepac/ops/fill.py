"""Filling missing depth before interpolation, so holes never leak zeros into the output."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from densepac.ops.tracing import any_size


def valid_mask(depth: torch.Tensor) -> torch.Tensor:
    """Boolean mask of measured pixels: finite and strictly positive (metres)."""
    return torch.isfinite(depth) & (depth > 0)


def fill_holes(depth: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Push-pull hole filling: every missing pixel gets a smooth average of its valid surroundings.

    A pyramid of blocks of 2^k x 2^k pixels (the last ones at the right and bottom edges cut
    short) holds, per block, the mean valid depth and the fraction of valid pixels; from the
    coarsest level down, each block keeps its mean where it has measurements, weighted by that
    fraction, and takes the bilinearly upsampled coarser result for the rest. Block sums come
    from one integral image, so no level's size depends on another's and the op traces for
    any size (ONNX export with dynamic shapes).

    Args:
        depth: (N, 1, H, W) metres, missing where ``valid`` is False.
        valid: (N, 1, H, W) bool; default :func:`valid_mask` of ``depth``.

    Returns:
        (N, 1, H, W) with valid pixels unchanged; an image without any valid pixel stays 0.
    """
    with any_size():
        return _fill_holes(depth, valid)


def _fill_holes(depth: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    if valid is None:
        valid = valid_mask(depth)
    h, w = depth.shape[-2:]
    weight = valid.to(depth.dtype)
    masked = torch.where(valid, depth, torch.zeros_like(depth))
    # float64: a block's sum is a difference of running sums over the whole image.
    integral = F.pad(torch.cat([masked, weight], 1).double().cumsum(-2).cumsum(-1), (1, 0, 1, 0))
    eps = torch.finfo(depth.dtype).tiny
    filled = None
    for k in reversed(range(_levels((h, w)) + 1)):
        if k == 0:  # single pixels, exactly as measured
            total, valid_count, count = masked, weight, torch.ones_like(weight)
        else:
            sums, count = _block_sums(integral, 2**k, h, w)
            total, valid_count = sums.to(depth.dtype).unbind(1)
            total, valid_count, count = total[:, None], valid_count[:, None], count.to(depth.dtype)
        mean = total / valid_count.clamp_min(eps)
        if filled is None:
            filled = mean
            continue
        up = F.interpolate(filled, size=mean.shape[-2:], mode="bilinear", align_corners=False)
        # Trust a block's measurements in proportion to the fraction of it they cover.
        alpha = (valid_count / count).clamp(0, 1)
        filled = alpha * mean + (1 - alpha) * up
    return filled


#: Pyramid levels of a graph exported for any size (``torch.export`` with dynamic shapes):
#: enough for 65536 pixels a side. Levels past the one of a single block change nothing.
EXPORT_LEVELS = 16


def _levels(size: tuple[int, int]) -> int:
    """Halvings that take ``size`` down to one block."""
    if torch.compiler.is_exporting():
        return EXPORT_LEVELS  # the count must not depend on the (symbolic) size
    return math.ceil(math.log2(max(size))) if max(size) > 1 else 0


def _block_sums(integral: torch.Tensor, step: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums over the ``step`` x ``step`` blocks of an (H, W) image from its integral image
    (N, C, H + 1, W + 1), and the (rows, cols) pixel counts of the blocks."""
    r0, r1 = _edges(h, step, integral.device)
    c0, c1 = _edges(w, step, integral.device)

    def corner(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return integral.index_select(-2, rows).index_select(-1, cols)

    sums = corner(r1, c1) - corner(r0, c1) - corner(r1, c0) + corner(r0, c0)
    return sums, (r1 - r0)[:, None] * (c1 - c0)[None, :]


def _edges(n: int, step: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """First and one-past-last index of each ``step``-long block of ``n``, the last one cut short."""
    starts = torch.arange(0, n, step, device=device)
    return starts, (starts + step).clamp(max=n)
