"""A real RGB-D scene with dense ground truth, available offline: Middlebury 2014 "Motorcycle".

scikit-image ships the scene inside its wheel (``skimage.data.stereo_motorcycle``): the left
and right images at a quarter of the original resolution and the left image's ground-truth
disparity (structured light, sub-pixel accurate; NaN where there is none). Depth follows
from the scene's calibration, ``Z = baseline * f / (d + doffs)``, with ``f`` and ``doffs``
given at full resolution, hence ``4 * d``.

Install the extra with ``pip install densepac[real]`` (or ``pip install scikit-image``).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from densepac.check import check_choice, check_int
from densepac.depth.degrade import simulate_lr
from densepac.errors import InputError
from densepac.ops.consistency import SAMPLINGS

#: Calibration of Middlebury 2014 "Motorcycle" (full resolution, from its calib.txt).
MOTORCYCLE_BASELINE_M = 0.193001
MOTORCYCLE_FOCAL_PX = 3979.911
MOTORCYCLE_DOFFS_PX = 124.343
#: scikit-image ships the images and disparity downsampled by this factor.
MOTORCYCLE_SHIPPED_DOWNSCALE = 4

Sampling = Literal["point", "area"]


def centre_crop(array: np.ndarray, multiple: int) -> np.ndarray:
    """The centred window of ``array`` (first two axes) whose sides are multiples of ``multiple``."""
    check_int(multiple, "multiple", minimum=1)
    h, w = array.shape[:2]
    ch, cw = h - h % multiple, w - w % multiple
    if ch == 0 or cw == 0:
        raise InputError(f"an image of {h}x{w} has no window divisible by {multiple}; use a smaller multiple")
    top, left = (h - ch) // 2, (w - cw) // 2
    return array[top : top + ch, left : left + cw]


def motorcycle_depth(disparity: np.ndarray) -> np.ndarray:
    """Metres from the shipped (quarter-resolution) disparity; 0 where it is not finite or not > 0."""
    d = np.asarray(disparity, dtype=np.float64)
    valid = np.isfinite(d) & (d > 0)
    full_res_disparity = MOTORCYCLE_SHIPPED_DOWNSCALE * np.where(valid, d, 0.0)
    depth = MOTORCYCLE_BASELINE_M * MOTORCYCLE_FOCAL_PX / (full_res_disparity + MOTORCYCLE_DOFFS_PX)
    return np.where(valid, depth, 0.0).astype(np.float32)


def load_motorcycle(multiple: int = 16) -> dict[str, Any]:
    """Middlebury 2014 "Motorcycle" at quarter resolution, centre-cropped to multiples of ``multiple``.

    The default 16 lets x4, x8 and x16 all divide the crop (496x736 of 500x741).

    Returns:
        ``{"rgb": (H, W, 3) float32 in [0, 1] (left image), "depth": (H, W) float32 metres
        (0 = missing, about 7 % of pixels), "name": "middlebury2014_motorcycle"}``.

    Raises:
        InputError: scikit-image is not installed, or ``multiple`` is unusable.
    """
    try:
        from skimage.data import stereo_motorcycle
    except ImportError:
        raise InputError(
            "the Motorcycle scene ships with scikit-image, which is not installed; "
            "pip install scikit-image (or pip install densepac[real])"
        ) from None
    left, _right, disparity = stereo_motorcycle()
    rgb = centre_crop(left, multiple).astype(np.float32) / 255.0
    depth = centre_crop(motorcycle_depth(disparity), multiple)
    return {"rgb": np.ascontiguousarray(rgb), "depth": np.ascontiguousarray(depth), "name": "middlebury2014_motorcycle"}


def make_lr(depth: np.ndarray, scale: int, sampling: Sampling) -> np.ndarray:
    """Low-resolution depth as a sensor with this ``sampling`` would see it (no noise, no holes
    added; an LR pixel whose ground truth is missing stays missing).

    ``"point"``: :func:`~densepac.depth.degrade.downsample_point`; ``"area"``:
    :func:`~densepac.depth.degrade.downsample_area`.
    """
    check_choice(sampling, SAMPLINGS, "sampling")
    return simulate_lr(depth, scale, protocol=sampling)


#: Pixels left out at each side of the HR image when scoring (bench_real's protocol).
BORDER = 6


def rmse_cm(pred: np.ndarray, gt: np.ndarray, border: int = BORDER) -> float:
    """RMSE in cm over valid ground-truth pixels, ``border`` px excluded at each side."""
    import torch

    from densepac.engine.metrics import depth_metrics

    return 100.0 * depth_metrics(torch.from_numpy(pred), torch.from_numpy(gt), crop=border)["rmse"]


def score_on_motorcycle(model: Any, scale: int, sampling: Sampling, **upsample: Any) -> tuple[float, float]:
    """(RMSE cm of ``model`` run as ``densepac upsample`` runs it, RMSE cm of bicubic) on the real scene.

    The LR input is the ground truth sampled by ``sampling`` at ``scale``; ``upsample`` are
    arguments of :func:`~densepac.depth.inference.upsample_depth` (sampling left to ``auto``).
    """
    from densepac.depth.inference import DEFAULT_REFINE, upsample_depth
    from densepac.models import create_model

    scene = load_motorcycle()
    rgb, gt = scene["rgb"], scene["depth"]
    lr = make_lr(gt, scale, sampling)
    upsample = {"refine": DEFAULT_REFINE, **upsample}
    return rmse_cm(upsample_depth(model, lr, rgb, **upsample), gt), rmse_cm(
        upsample_depth(create_model("bicubic"), lr, rgb), gt
    )
