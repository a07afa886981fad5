"""Joint transforms: identical geometry on guide and target, nearest depth, RGB-only color."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch.utils.data

from densepac.depth.transforms import DepthTransform
from densepac.errors import InputError
from densepac.segmentation.transforms import SegTransform


def _pair(h: int = 40, w: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rgb = rng.uniform(0.2, 0.6, size=(h, w, 3)).astype(np.float32)
    depth = rng.uniform(1.0, 5.0, size=(h, w)).astype(np.float32)
    return rgb, depth


def _with_marker(y: int, x: int, h: int = 40, w: int = 48) -> tuple[np.ndarray, np.ndarray]:
    rgb, depth = _pair(h, w)
    rgb[y : y + 3, x : x + 2] = 1.0  # bright 3x2 marker
    depth[y : y + 3, x : x + 2] = 9.0
    return rgb, depth


def _marker_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return ys.min(), ys.max(), xs.min(), xs.max()


@pytest.mark.parametrize("seed", range(6))
def test_marker_moves_together_under_crop_and_flips(seed):
    rgb, depth = _with_marker(10, 30)
    t = DepthTransform(crop=(32, 40), hflip=True, vflip=True, color_jitter=False, seed=seed)
    out_rgb, out_depth = t(rgb, depth)
    assert out_rgb.shape == (32, 40, 3) and out_depth.shape == (32, 40)
    in_rgb = out_rgb.min(axis=2) > 0.99
    in_depth = out_depth == 9.0
    assert in_rgb.any()
    assert np.array_equal(in_rgb, in_depth)
    y0, y1, x0, x1 = _marker_box(in_depth)
    assert (y1 - y0, x1 - x0) == (2, 1)  # shape preserved (flips keep 3x2)


def test_flip_is_applied_sometimes_and_identically():
    rgb, depth = _with_marker(5, 3)
    t = DepthTransform(hflip=True, color_jitter=False, seed=1)
    positions = set()
    for _ in range(12):
        out_rgb, out_depth = t(rgb, depth)
        box = _marker_box(out_depth == 9.0)
        assert box == _marker_box(out_rgb.min(axis=2) > 0.99)
        positions.add(box)
    assert positions == {(5, 7, 3, 4), (5, 7, 43, 44)}


def test_depth_resampled_with_nearest_only():
    rgb, depth = _pair()
    t = DepthTransform(crop=(32, 32), rotate=25, scale_range=(0.7, 1.3), color_jitter=False, seed=0)
    for _ in range(4):
        _, out = t(rgb, depth)
        values = out[out > 0]
        # Every depth is an input depth (never an average across an edge); rotation
        # brings in missing (0) corners.
        assert np.isin(values, depth).all()
    assert t.resamples


def test_color_jitter_touches_rgb_only():
    rgb, depth = _pair()
    t = DepthTransform(hflip=False, color_jitter=0.4, seed=0)
    changed = False
    for _ in range(5):
        out_rgb, out_depth = t(rgb, depth)
        assert np.array_equal(out_depth, depth)
        assert out_rgb.dtype == np.float32 and out_rgb.min() >= 0 and out_rgb.max() <= 1
        changed |= not np.allclose(out_rgb, rgb)
    assert changed


def test_seed_reproducible():
    rgb, depth = _pair()
    a = DepthTransform(crop=(24, 24), seed=7)
    b = DepthTransform(crop=(24, 24), seed=7)
    for _ in range(3):
        ra, da = a(rgb, depth)
        rb, db = b(rgb, depth)
        assert np.array_equal(ra, rb) and np.array_equal(da, db)


@pytest.mark.parametrize("step", [4, 8])
def test_aligned_crop_offsets(step):
    h, w = 48, 64
    rgb = np.zeros((h, w, 3), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    depth = (1 + yy * 100 + xx).astype(np.float32)  # encodes the source pixel
    t = DepthTransform(crop=(16, 24), hflip=False, color_jitter=False, multiple_of=8, crop_step=step, seed=0)
    for _ in range(8):
        _, out = t(rgb, depth)
        y0, x0 = divmod(int(out[0, 0]) - 1, 100)
        assert y0 % step == 0 and x0 % step == 0


def test_crop_larger_than_input_pads_missing_depth():
    rgb, depth = _pair(20, 20)
    _, out = DepthTransform(crop=(24, 32), hflip=False, color_jitter=False, seed=0)(rgb, depth)
    assert out.shape == (24, 32)
    assert np.array_equal(out[:20, :20], depth)
    assert np.all(out[20:] == 0) and np.all(out[:, 20:] == 0)


def test_extra_maps_follow_geometry():
    rgb, depth = _with_marker(12, 8)
    t = DepthTransform(crop=(32, 32), hflip=True, color_jitter=False, seed=3)
    for _ in range(4):
        _, out, extra = t.apply(rgb, depth, {"copy": depth * 2})
        assert np.array_equal(extra["copy"], out * 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(crop=(30, 32), multiple_of=8), "divisible"),
        (dict(crop=(0, 32)), "positive"),
        (dict(crop="big"), "crop"),
        (dict(scale_range=(1.2, 0.8)), "scale_range"),
        (dict(rotate=-5), "rotate"),
        (dict(color_jitter=2.0), "color_jitter"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        DepthTransform(**kwargs)


def test_mismatched_inputs():
    rgb, depth = _pair()
    with pytest.raises(InputError, match="same size"):
        DepthTransform()(rgb, depth[:-1])
    with pytest.raises(InputError, match="RGB"):
        DepthTransform()(rgb[..., 0], depth)


def test_workers_get_different_streams(monkeypatch):
    rgb, depth = _with_marker(5, 3)
    flips: dict[int, list] = {}
    for worker in (0, 1):
        t = DepthTransform(hflip=True, color_jitter=False, seed=0)
        info = types.SimpleNamespace(id=worker, seed=1234 + worker)
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda info=info: info)
        flips[worker] = [_marker_box(t(rgb, depth)[1] == 9.0)[2] for _ in range(16)]
    assert flips[0] != flips[1]


# --------------------------------------------------------------------------- segmentation


def test_seg_transform_nearest_and_ignore_fill():
    rng = np.random.default_rng(0)
    image = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
    mask = rng.integers(0, 21, size=(40, 48))
    t = SegTransform(crop=(32, 32), rotate=30, color_jitter=True, seed=0)
    out_img, out_mask = t(image, mask)
    assert out_img.shape == (32, 32, 3) and out_img.dtype == np.uint8
    assert out_mask.dtype == np.int64
    assert set(np.unique(out_mask)) <= set(range(21)) | {255}
    assert (out_mask == 255).any()  # rotated-in corners are ignored, not class 0


def test_seg_marker_moves_together():
    image = np.zeros((40, 48, 3), np.uint8)
    mask = np.zeros((40, 48), np.int64)
    image[20:23, 5:9] = 255
    mask[20:23, 5:9] = 7
    t = SegTransform(crop=(32, 40), hflip=True, color_jitter=False, seed=2)
    for _ in range(6):
        out_img, out_mask = t(image, mask)
        assert np.array_equal(out_img[..., 0] == 255, out_mask == 7)


def test_seg_rejects_float_mask():
    with pytest.raises(InputError, match="integer"):
        SegTransform()(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.float32))
