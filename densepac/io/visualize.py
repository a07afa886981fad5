"""Pictures for humans: colored depth, side-by-side previews, label colors, overlays.

Every function returns uint8 RGB ``(H, W, 3)`` arrays (channel order RGB, not OpenCV's
BGR) and accepts images as float ``[0, 1]`` or uint8 ``(H, W, 3)`` / ``(H, W)`` arrays.
Depth follows the package convention: float metres, ``0`` or non-finite = missing.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from densepac.check import check_depth_array
from densepac.errors import InputError
from densepac.io.files import PathLike
from densepac.io.images import voc_palette, write_image

# Turbo: perceptually smoother than jet and its low end is dark blue, not black, so
# far pixels stay distinguishable from missing (black) ones.
_DEPTH_COLORMAP = cv2.COLORMAP_TURBO
_ROBUST_PERCENTILES = (2.0, 98.0)
_IGNORE_LABEL = 255


def _as_array(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu").numpy()
    return np.asarray(x)


def _as_depth(depth: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """float32 ``(H, W)`` with missing as NaN, from ``(H, W)``/``(1, H, W)``/``(1, 1, H, W)``."""
    arr = _as_array(depth)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    out = check_depth_array(arr, name)
    out[out <= 0] = np.nan
    return out


def _as_rgb_uint8(image: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB from float [0, 1] or uint8 HWC/gray, or a CHW/NCHW tensor."""
    arr = _as_array(image)
    if isinstance(image, torch.Tensor):
        if arr.ndim == 4 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim == 3:
            arr = arr.transpose(1, 2, 0)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.size == 0:
        raise InputError(f"{name}: expected an (H, W, 3) RGB image, got shape {tuple(arr.shape)}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    values = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def _robust_range(values: np.ndarray) -> tuple[float, float]:
    """(low, high) percentiles of the finite entries; a degenerate range is widened."""
    valid = values[np.isfinite(values)]
    if valid.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(valid, _ROBUST_PERCENTILES))
    if high <= low:
        high = low + max(abs(low) * 1e-3, 1e-6)
    return low, high


def _apply_colormap(unit: np.ndarray, colormap: int) -> np.ndarray:
    """uint8 RGB from values in [0, 1] (NaN allowed, colored as 0) through an OpenCV map."""
    idx = np.round(np.clip(np.nan_to_num(unit, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)
    return cv2.applyColorMap(idx, colormap)[..., ::-1].copy()


def _colorize_nan_depth(depth: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    # Near = warm: turbo runs cold -> warm, so invert the normalized depth.
    unit = 1.0 - (depth - vmin) / (vmax - vmin)
    rgb = _apply_colormap(unit, _DEPTH_COLORMAP)
    rgb[np.isnan(depth)] = 0
    return rgb


def colorize_depth(
    depth: np.ndarray | torch.Tensor,
    vmin: float | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """uint8 RGB ``(H, W, 3)`` picture of a depth map (metres) with the turbo colormap.

    Near is red (warm), far is blue; missing pixels are black. ``vmin``/``vmax`` (metres)
    default to the 2nd/98th percentiles of the valid pixels, so a few outliers do not
    flatten the picture; values outside are clipped.
    """
    d = _as_depth(depth, "colorize_depth")
    low, high = _robust_range(d)
    low = low if vmin is None else float(vmin)
    high = high if vmax is None else float(vmax)
    if not high > low:
        raise InputError(f"colorize_depth: vmax ({high:g}) must be greater than vmin ({low:g})")
    return _colorize_nan_depth(d, low, high)


def _put_label(panel: np.ndarray, text: str) -> None:
    """Draw ``text`` top-left on an RGB uint8 panel in place, white with a dark outline."""
    height, width = panel.shape[:2]
    scale = max(0.3, min(width, height) / 320.0)
    thickness = max(1, int(round(scale)))
    origin = (max(2, int(4 * scale)), max(10, int(16 * scale)))
    font = cv2.FONT_HERSHEY_SIMPLEX
    # The outline keeps the label readable on both bright and dark content.
    cv2.putText(panel, text, origin, font, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(panel, text, origin, font, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def depth_preview(
    guide: np.ndarray | torch.Tensor,
    depth_in: np.ndarray | torch.Tensor,
    depth_out: np.ndarray | torch.Tensor,
    path: PathLike | None = None,
) -> np.ndarray:
    """Side-by-side uint8 RGB ``(H, 3W, 3)``: guide | input depth | output depth.

    ``guide`` is ``(H, W, 3)`` (float [0, 1] or uint8); ``depth_in`` is low resolution and
    is nearest-upsampled (pixel-centre aligned) to ``(H, W)``; ``depth_out`` must be
    ``(H, W)``. Both depths share one color range (robust percentiles of their valid
    pixels); missing pixels are black. When ``path`` is given the picture is also written
    there atomically (PNG recommended).
    """
    rgb = _as_rgb_uint8(guide, "depth_preview guide")
    height, width = rgb.shape[:2]
    d_in = _as_depth(depth_in, "depth_preview depth_in")
    d_out = _as_depth(depth_out, "depth_preview depth_out")
    if d_out.shape != (height, width):
        raise InputError(
            f"depth_preview: depth_out has shape {d_out.shape} but the guide is "
            f"{(height, width)}; pass the upsampled depth at the guide's size"
        )
    if d_in.shape != (height, width):
        # NEAREST_EXACT samples pixel centres, matching the align_corners=False convention.
        d_in = cv2.resize(d_in, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
    low, high = _robust_range(np.concatenate([d_in.ravel(), d_out.ravel()]))
    panels = [
        rgb.copy(),
        _colorize_nan_depth(d_in, low, high),
        _colorize_nan_depth(d_out, low, high),
    ]
    for panel, text in zip(panels, ("guide", "input", "output")):
        _put_label(panel, text)
    preview = np.concatenate(panels, axis=1)
    if path is not None:
        write_image(path, preview)
    return preview


def colorize_labels(labels: np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 RGB ``(H, W, 3)`` of int class ids with the VOC palette.

    The ignore id 255 keeps its VOC color (224, 224, 192), the cream used on VOC borders.
    Ids above 255 continue the VOC bit pattern; negative ids raise InputError.
    """
    arr = _as_array(labels)
    if arr.ndim != 2 or arr.size == 0 or arr.dtype.kind not in "uib":
        raise InputError(f"colorize_labels: expected a 2-D integer label map, got {arr.dtype} {tuple(arr.shape)}")
    ids = arr.astype(np.int64)
    low, high = int(ids.min()), int(ids.max())
    if low < 0:
        raise InputError(f"colorize_labels: label ids must be >= 0, got {low}")
    return voc_palette(max(high + 1, _IGNORE_LABEL + 1))[ids]


def _blend(base: np.ndarray, top: np.ndarray, alpha: float, name: str) -> np.ndarray:
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"{name}: alpha must be in [0, 1], got {alpha}")
    mixed = (1.0 - alpha) * base.astype(np.float32) + alpha * top.astype(np.float32)
    return np.round(mixed).astype(np.uint8)


def overlay_mask(
    image: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    alpha: float = 0.5,
) -> np.ndarray:
    """uint8 RGB: ``image`` blended with :func:`colorize_labels` of ``labels`` (same H, W).

    ``alpha`` is the label colors' weight; every pixel is blended, background included.
    """
    rgb = _as_rgb_uint8(image, "overlay_mask image")
    colors = colorize_labels(labels)
    if colors.shape[:2] != rgb.shape[:2]:
        raise InputError(
            f"overlay_mask: labels {colors.shape[:2]} and image {rgb.shape[:2]} differ in "
            "size; resize the labels with nearest-neighbour first"
        )
    return _blend(rgb, colors, alpha, "overlay_mask")


def heatmap_overlay(
    image: np.ndarray | torch.Tensor,
    heat: np.ndarray | torch.Tensor,
    alpha: float = 0.5,
) -> np.ndarray:
    """uint8 RGB: ``image`` blended with a turbo-colored ``heat`` map.

    ``heat`` is any real ``(h, w)`` map (attention, error, confidence); it is min-max
    normalized over its finite values (non-finite -> 0, constant -> all 0) and resized
    bilinearly to the image size.
    """
    rgb = _as_rgb_uint8(image, "heatmap_overlay image")
    h = _as_array(heat)
    while h.ndim > 2 and h.shape[0] == 1:
        h = h[0]
    if h.ndim != 2 or h.size == 0:
        raise InputError(f"heatmap_overlay: heat must be a 2-D map, got shape {tuple(h.shape)}")
    h = h.astype(np.float32)
    finite = np.isfinite(h)
    unit = np.zeros_like(h)
    if finite.any():
        low, high = float(h[finite].min()), float(h[finite].max())
        if high > low:
            unit[finite] = (h[finite] - low) / (high - low)
    height, width = rgb.shape[:2]
    if unit.shape != (height, width):
        unit = cv2.resize(unit, (width, height), interpolation=cv2.INTER_LINEAR)
    return _blend(rgb, _apply_colormap(unit, _DEPTH_COLORMAP), alpha, "heatmap_overlay")
