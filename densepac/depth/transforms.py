"""Joint augmentation of an RGB guide and its depth map.

The geometry (crop, flips, optional rotation / zoom) is identical on both, color jitter
touches RGB only, and depth is resampled with nearest-neighbour interpolation so a depth
value is never blended across an occlusion edge. Pixels that a rotation or padding brings
in from outside the image are missing (0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from densepac.data.transforms import BaseJointTransform, check_transform_image
from densepac.errors import InputError


class DepthTransform(BaseJointTransform):
    """Joint random augmentation of an RGB guide and its depth map.

    Args:
        crop: ``(height, width)`` random crop (padded with missing depth / black RGB when
            the input is smaller), or None. Both must be divisible by ``multiple_of``.
        hflip, vflip: random flips with probability 0.5.
        color_jitter: False, True (strength 0.2) or a strength in [0, 1): brightness,
            contrast, saturation (+-strength) and hue (+-strength/10), RGB only.
        scale_range: random zoom factors ``(low, high)`` (depth values are kept, as if the
            field of view changed; not a physical camera move), or None.
        rotate: maximum absolute rotation in degrees (0 = none).
        multiple_of: the upsampling scale the crop must stay divisible by.
        crop_step: crop offsets are multiples of this (set it to the scale when a given
            low-resolution map must stay aligned).
        seed: seed of the augmentation stream (see the module doc).

    Call with ``(rgb (H, W, 3) float [0, 1] or uint8, depth (H, W) float metres)``; returns
    the transformed ``(rgb, depth)`` (float32 rgb in [0, 1] for float input).
    """

    def __init__(
        self,
        crop: Sequence[int] | None = None,
        hflip: bool = True,
        vflip: bool = False,
        color_jitter: bool | float = True,
        scale_range: tuple[float, float] | None = None,
        rotate: float = 0.0,
        multiple_of: int = 1,
        crop_step: int = 1,
        seed: int | None = None,
    ) -> None:
        super().__init__(crop, hflip, vflip, color_jitter, scale_range, rotate, multiple_of, crop_step, seed)

    def __call__(self, rgb: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out_rgb, out_depth, _ = self.apply(rgb, depth)
        return out_rgb, out_depth

    def apply(
        self, rgb: np.ndarray, depth: np.ndarray, extra: Mapping[str, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Like ``__call__``, also moving ``extra`` (H, W) maps with the same geometry (nearest)."""
        image = check_transform_image(rgb, "DepthTransform rgb")
        d = np.asarray(depth, dtype=np.float32)
        if d.shape != image.shape[:2]:
            raise InputError(
                f"DepthTransform: rgb is {image.shape[0]}x{image.shape[1]} but depth is "
                f"{'x'.join(map(str, d.shape))}; give aligned arrays of the same size"
            )
        d = np.where(np.isfinite(d), d, 0.0).astype(np.float32)
        names = list(extra or {})
        maps = [d] + [np.asarray(extra[n], dtype=np.float32) for n in names]  # type: ignore[index]
        for name, m in zip(names, maps[1:]):
            if m.shape != d.shape:
                raise InputError(f"DepthTransform: extra map {name!r} has shape {m.shape}, expected {d.shape}")
        out = self._pipeline(image=image, masks=maps)
        masks = out["masks"]
        image_out = out["image"]
        if image_out.dtype != np.uint8:
            image_out = np.clip(image_out, 0.0, 1.0).astype(np.float32)
        moved = {n: np.asarray(m) for n, m in zip(names, masks[1:])}
        return image_out, np.asarray(masks[0], dtype=np.float32), moved
