"""What a low-resolution depth pixel stands for, told from the depth map itself (``--sampling auto``).

A point-sampled map copies single HR pixels, so across a step between two flat surfaces the
LR pixel in the step takes one side's depth or the other's. An area-sampled map (a
low-resolution sensor, a binned or downscaled depth map) averages its block, so wherever the
step does not fall on a block border the pixel in the step holds a mix of both depths. The
share of such in-between values among the steps of a map tells the two apart: on procedural
scenes it is below 0.05 for point sampling and above 0.3 for area (and bicubic) sampling at
x4 to x16; on the real Middlebury scene it is 0.07-0.09 against 0.45-0.58.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from densepac.check import check_choice, check_depth_array
from densepac.ops.consistency import SAMPLINGS
from densepac.ops.refine import graph_refine

#: ``sampling`` arguments of the inference API: a sampling, or ``"auto"`` (estimated).
SAMPLING_CHOICES: tuple[str, ...] = (*SAMPLINGS, "auto")
#: A step: the depth changes by more than this fraction across one LR pixel...
_STEP = 0.08
#: ... while each side changes by less than this fraction of the step (flat on both sides).
_FLAT = 0.25
#: In-between: a pixel in a step at least this far from both sides (as a fraction of the step).
_MIXED = 0.15
#: Share of in-between steps above which the map is taken as area-sampled.
_AREA_SHARE = 0.25
#: Fewer steps than this give no evidence; the map is then taken as area-sampled, what
#: sensors and downscaled maps deliver.
_MIN_STEPS = 20


def mixed_step_share(depth_lr: np.ndarray | torch.Tensor) -> tuple[float, int]:
    """(share of in-between values among the steps of ``depth_lr``, number of steps found).

    A step is a run of five valid pixels along a row or column, ``a b c d e``, where ``b`` to
    ``d`` changes by more than 8 % of the depth while ``a b`` and ``d e`` are flat; the step
    is in-between when ``c`` lies more than 15 % of the change away from both ``b`` and ``d``.
    """
    arr = depth_lr.detach().cpu().numpy() if isinstance(depth_lr, torch.Tensor) else depth_lr
    arr = np.squeeze(arr)
    d = check_depth_array(arr, "depth_lr").astype(np.float64)
    positions = []
    for a in (d, d.T):
        x0, x1, x2, x3, x4 = a[:, :-4], a[:, 1:-3], a[:, 2:-2], a[:, 3:-1], a[:, 4:]
        valid = (x0 > 0) & (x1 > 0) & (x2 > 0) & (x3 > 0) & (x4 > 0)
        jump = x3 - x1
        step = np.abs(jump) > _STEP * np.minimum(x1, x3)
        flat = np.maximum(np.abs(x1 - x0), np.abs(x4 - x3)) < _FLAT * np.abs(jump)
        chosen = valid & step & flat
        positions.append((x2[chosen] - x1[chosen]) / jump[chosen])
    t = np.concatenate(positions)
    if t.size == 0:
        return 0.0, 0
    return float(((t > _MIXED) & (t < 1 - _MIXED)).mean()), int(t.size)


def estimate_sampling(depth_lr: np.ndarray | torch.Tensor) -> str:
    """``"point"`` or ``"area"``: how ``depth_lr`` (h, w) metres was most likely sampled.

    See the module docstring; a map with too few depth steps to tell is taken as ``"area"``.
    """
    share, steps = mixed_step_share(depth_lr)
    if steps < _MIN_STEPS:
        return "area"
    return "area" if share > _AREA_SHARE else "point"


def resolve_sampling(sampling: str, depth_lr: np.ndarray | torch.Tensor) -> str:
    """``sampling`` itself, or the estimate of :func:`estimate_sampling` for ``"auto"``."""
    check_choice(sampling, SAMPLING_CHOICES, "sampling")
    return estimate_sampling(depth_lr) if sampling == "auto" else sampling


def samplings_of(depth_lr: torch.Tensor, sampling: str) -> list[str]:
    """One sampling per sample of ``depth_lr`` (N, 1, h, w): ``sampling``, or each sample's estimate for ``"auto"``."""
    check_choice(sampling, SAMPLING_CHOICES, "sampling")
    if sampling == "auto":
        return [estimate_sampling(d) for d in depth_lr]
    return [sampling] * depth_lr.shape[0]


def refine_batch(
    start: torch.Tensor, depth_lr: torch.Tensor, guide: torch.Tensor, sampling: str, **params: Any
) -> torch.Tensor:
    """:func:`~densepac.ops.graph_refine` of a batch whose samples may differ in sampling (``"auto"``).

    One solve per sampling present in the batch.
    """
    if sampling != "auto":  # one solve, without a Python list as long as the batch (an exported batch is symbolic)
        return graph_refine(start, depth_lr, guide, check_choice(sampling, SAMPLING_CHOICES, "sampling"), **params)
    kinds = samplings_of(depth_lr, sampling)
    if len(set(kinds)) == 1:
        return graph_refine(start, depth_lr, guide, kinds[0], **params)
    out = torch.empty_like(start)
    for kind in sorted(set(kinds)):
        idx = torch.tensor([i for i, k in enumerate(kinds) if k == kind], device=depth_lr.device)
        out[idx] = graph_refine(start[idx], depth_lr[idx], guide[idx], kind, **params)
    return out
