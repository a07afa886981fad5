"""Joint augmentation of an image and its integer label mask.

The geometry is identical on both (nearest-neighbour for the mask), color jitter touches
the image only, and pixels brought in from outside the image get ``ignore_index``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from densepac.data.transforms import BaseJointTransform, check_transform_image
from densepac.errors import InputError


class SegTransform(BaseJointTransform):
    """Joint random augmentation of an image and an integer label mask.

    Same arguments as :class:`DepthTransform` (``multiple_of`` for output strides), plus
    ``ignore_index``: the label of pixels brought in by padding or rotation (255).
    Call with ``(image (H, W, 3), mask (H, W) int)``; returns ``(image, mask int64)``.
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
        ignore_index: int = 255,
    ) -> None:
        self.ignore_index = int(ignore_index)
        self.fill_mask = float(self.ignore_index)
        super().__init__(crop, hflip, vflip, color_jitter, scale_range, rotate, multiple_of, crop_step, seed)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        img = check_transform_image(image, "SegTransform image")
        m = np.asarray(mask)
        if m.shape != img.shape[:2] or m.dtype.kind not in "ui":
            raise InputError(
                f"SegTransform: mask must be an integer (H, W) map matching the image "
                f"{img.shape[0]}x{img.shape[1]}, got {m.dtype} {tuple(m.shape)}"
            )
        # int32 keeps OpenCV's nearest warp exact for any class id (int64 is unsupported).
        out = self._pipeline(image=img, mask=m.astype(np.int32))
        image_out = out["image"]
        if image_out.dtype != np.uint8:
            image_out = np.clip(image_out, 0.0, 1.0).astype(np.float32)
        return image_out, np.asarray(out["mask"]).astype(np.int64)
