"""The seeded joint-augmentation base both tasks' transforms build on (albumentations).

:class:`BaseJointTransform` applies one albumentations pipeline to an image and a map that
must stay aligned with it (depth in :class:`densepac.depth.transforms.DepthTransform`, labels
in :class:`densepac.segmentation.transforms.SegTransform`).

Randomness: with ``seed=None`` (what training recipes use) each call draws from numpy's
global RNG, which the Trainer seeds per sample, so reruns and resumed runs are exact. With
a ``seed``, each transform owns an albumentations random state; inside DataLoader workers
it reseeds itself once per worker from the worker's seed (``torch``'s per-worker seed,
mixed with ``seed``), because forked workers would otherwise all replay the same
augmentations. In the main process, ``seed`` makes the sequence reproducible.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch.utils.data

from densepac.errors import InputError


class _AlignedRandomCrop(A.RandomCrop):
    """RandomCrop whose top-left corner is a multiple of ``step`` pixels.

    Keeps the crop on the grid of a given low-resolution map (point samples stay point
    samples). Padding, when the image is smaller than the crop, goes to the bottom/right
    so the image origin stays on the grid.
    """

    def __init__(self, height: int, width: int, step: int = 1, **kwargs: Any) -> None:
        super().__init__(height=height, width=width, pad_position="top_left", **kwargs)
        self.step = int(step)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        out = super().get_params_dependent_on_data(params, data)
        x0, y0, x1, y1 = out["crop_coords"]
        nx, ny = x0 - x0 % self.step, y0 - y0 % self.step
        out["crop_coords"] = (nx, ny, nx + (x1 - x0), ny + (y1 - y0))
        return out


def _check_crop(crop: Sequence[int] | None, multiple_of: int) -> tuple[int, int] | None:
    if crop is None:
        return None
    try:
        h, w = (int(v) for v in crop)
    except (TypeError, ValueError) as exc:
        raise InputError(f"crop={crop!r}; give (height, width) in pixels or None") from exc
    if h <= 0 or w <= 0:
        raise InputError(f"crop={crop!r} must be positive (height, width)")
    if h % multiple_of or w % multiple_of:
        raise InputError(
            f"crop={h}x{w} is not divisible by multiple_of={multiple_of} (the upsampling "
            f"scale); use e.g. {max(multiple_of, h - h % multiple_of)}x"
            f"{max(multiple_of, w - w % multiple_of)}"
        )
    return h, w


def _jitter(strength: float) -> A.ColorJitter:
    return A.ColorJitter(
        brightness=(1 - strength, 1 + strength),
        contrast=(1 - strength, 1 + strength),
        saturation=(1 - strength, 1 + strength),
        hue=(-strength / 10, strength / 10),
        p=0.8,
    )


class _SeededCompose:
    """An ``A.Compose`` with reproducible randomness.

    ``seed=None``: every call draws its albumentations seed from numpy's global RNG, which the
    Trainer seeds from (seed, epoch, sample index) before each sample, so a rerun or a resumed
    run augments each sample exactly as before. With a ``seed``: one stream of its own,
    reseeded once in each DataLoader worker.
    """

    def __init__(self, transforms: list, seed: int | None) -> None:
        self.seed = seed
        self.compose = A.Compose(transforms, seed=seed)
        self._worker_key: tuple[int, int] | None = None

    def __call__(self, **data: Any) -> dict[str, Any]:
        if self.seed is None:
            self.compose.set_random_seed(int(np.random.randint(0, 2**31 - 1)))
            return self.compose(**data)
        info = torch.utils.data.get_worker_info()
        if info is not None:
            key = (os.getpid(), info.id)
            if key != self._worker_key:
                self._worker_key = key
                state = np.random.SeedSequence([self.seed or 0, int(info.seed)]).generate_state(1)[0]
                self.compose.set_random_seed(int(state))
        return self.compose(**data)

    def __repr__(self) -> str:
        return repr(self.compose)


class BaseJointTransform:
    """Shared construction of the geometric + photometric pipeline."""

    fill_mask: float = 0.0

    def __init__(
        self,
        crop: Sequence[int] | None,
        hflip: bool,
        vflip: bool,
        color_jitter: bool | float,
        scale_range: tuple[float, float] | None,
        rotate: float,
        multiple_of: int,
        crop_step: int,
        seed: int | None,
    ) -> None:
        if isinstance(multiple_of, bool) or int(multiple_of) < 1:
            raise InputError(f"multiple_of={multiple_of!r} must be a positive integer (the upsampling scale)")
        if int(crop_step) < 1:
            raise InputError(f"crop_step={crop_step!r} must be a positive integer")
        if rotate < 0:
            raise InputError(f"rotate={rotate} must be a non-negative angle in degrees")
        if scale_range is not None:
            lo, hi = (float(v) for v in scale_range)
            if not 0 < lo <= hi:
                raise InputError(f"scale_range={scale_range!r}; give (low, high) with 0 < low <= high")
            scale_range = (lo, hi)
        self.crop = _check_crop(crop, int(multiple_of))
        self.hflip, self.vflip = bool(hflip), bool(vflip)
        self.color_jitter = 0.2 if color_jitter is True else float(color_jitter or 0.0)
        if not 0 <= self.color_jitter < 1:
            raise InputError(f"color_jitter={color_jitter!r}; give a bool or a strength in [0, 1)")
        self.scale_range, self.rotate = scale_range, float(rotate)
        self.multiple_of, self.crop_step = int(multiple_of), int(crop_step)
        self.seed = seed
        ops: list = []
        if self.resamples:
            ops.append(
                A.Affine(
                    scale=self.scale_range or (1.0, 1.0),
                    rotate=(-self.rotate, self.rotate),
                    interpolation=cv2.INTER_LINEAR,
                    mask_interpolation=cv2.INTER_NEAREST,
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=0,
                    fill_mask=self.fill_mask,
                    keep_ratio=True,
                    p=1.0,
                )
            )
        if self.crop is not None:
            ops.append(
                _AlignedRandomCrop(
                    *self.crop, step=self.crop_step, pad_if_needed=True, fill=0.0, fill_mask=self.fill_mask
                )
            )
        if self.hflip:
            ops.append(A.HorizontalFlip(p=0.5))
        if self.vflip:
            ops.append(A.VerticalFlip(p=0.5))
        if self.color_jitter > 0:
            ops.append(_jitter(self.color_jitter))
        self._pipeline = _SeededCompose(ops, seed)

    @property
    def resamples(self) -> bool:
        """True when the geometry interpolates (rotation or zoom), not only crops/flips."""
        return self.rotate > 0 or (self.scale_range is not None and self.scale_range != (1.0, 1.0))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(crop={self.crop}, hflip={self.hflip}, vflip={self.vflip}, "
            f"color_jitter={self.color_jitter}, scale_range={self.scale_range}, rotate={self.rotate}, "
            f"multiple_of={self.multiple_of}, crop_step={self.crop_step}, seed={self.seed})"
        )


def check_transform_image(image: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"{name}: expected an (H, W, 3) RGB image, got shape {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32, copy=False)
    return np.ascontiguousarray(arr)
