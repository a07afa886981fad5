"""Tests for densepac.io.visualize: depth colors, previews, palettes, overlays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from densepac.errors import InputError
from densepac.io import visualize as vis
from densepac.io.images import read_image


@pytest.fixture
def ramp() -> np.ndarray:
    """float32 (32, 48) depth ramp 1..5 m left to right, bottom-right 4x4 block missing."""
    d = np.tile(np.linspace(1.0, 5.0, 48, dtype=np.float32), (32, 1))
    d[-4:, -4:] = 0.0
    return d


def test_colorize_depth_shape_missing_black_near_warm(ramp: np.ndarray) -> None:
    ramp = ramp.copy()
    ramp[0, 20] = np.nan
    rgb = vis.colorize_depth(ramp)
    assert rgb.dtype == np.uint8 and rgb.shape == (32, 48, 3)
    assert (rgb[-4:, -4:] == 0).all() and (rgb[0, 20] == 0).all()
    near, far = rgb[10, 0].astype(int), rgb[10, 40].astype(int)
    assert near[0] > near[2] and far[2] > far[0]
    # Valid pixels are never drawn black, so they stay distinct from missing ones.
    assert (rgb[1:-4].sum(axis=-1) > 0).all()


def test_colorize_depth_explicit_range_and_degenerate_inputs(ramp: np.ndarray) -> None:
    a = vis.colorize_depth(ramp, vmin=0.0, vmax=100.0)
    # Everything is near relative to 100 m: the two ends look the same.
    np.testing.assert_array_equal(a[5, 0], vis.colorize_depth(ramp, vmin=0.0, vmax=100.0)[5, 1])
    assert (vis.colorize_depth(np.zeros((8, 8))) == 0).all()
    assert vis.colorize_depth(np.full((8, 8), 2.0)).shape == (8, 8, 3)
    assert vis.colorize_depth(torch.ones(1, 1, 8, 8)).shape == (8, 8, 3)
    with pytest.raises(InputError, match="vmax"):
        vis.colorize_depth(ramp, vmin=3.0, vmax=2.0)
    with pytest.raises(InputError):
        vis.colorize_depth(np.ones((2, 8, 8)))


def test_depth_preview_layout_and_file(tmp_path: Path, ramp: np.ndarray) -> None:
    guide = np.random.default_rng(0).random((32, 48, 3)).astype(np.float32)
    low = ramp[::4, ::4].copy()  # (8, 12)
    low[-1, -1] = 0.0  # covers the bottom-right 4x4 block of the guide
    path = tmp_path / "preview.png"
    out = vis.depth_preview(guide, low, ramp, path=path)
    assert out.dtype == np.uint8 and out.shape == (32, 144, 3)
    # Guide panel is the guide (away from its text label).
    np.testing.assert_array_equal(out[-1, :48], np.round(guide[-1] * 255).astype(np.uint8))
    # Missing pixels are black in both depth panels, nearest upsampling included.
    assert (out[-4:, 92:96] == 0).all() and (out[-4:, 140:144] == 0).all()
    assert (out[-5, 92:96].sum(axis=-1) > 0).all()
    # Shared color range: same depth, same color in both panels.
    np.testing.assert_array_equal(out[20, 48], out[20, 96])
    np.testing.assert_allclose(read_image(path), out / 255.0, atol=1e-6)


def test_depth_preview_rejects_mismatched_output(ramp: np.ndarray) -> None:
    with pytest.raises(InputError, match="depth_out"):
        vis.depth_preview(np.zeros((16, 16, 3)), ramp, ramp)


def test_voc_palette_known_colors() -> None:
    pal = vis.voc_palette()
    assert pal.dtype == np.uint8 and pal.shape == (256, 3)
    assert pal[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert pal[15].tolist() == [192, 128, 128]  # VOC 'person'
    assert pal[255].tolist() == [224, 224, 192]
    assert vis.voc_palette(3).shape == (3, 3)
    assert len({tuple(c) for c in vis.voc_palette(256)}) == 256


def test_colorize_labels_and_overlay() -> None:
    labels = np.array([[0, 1], [2, 255]], dtype=np.int64)
    rgb = vis.colorize_labels(labels)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb[0, 1].tolist() == [128, 0, 0] and rgb[1, 1].tolist() == [224, 224, 192]
    assert vis.colorize_labels(np.array([[300]])).shape == (1, 1, 3)
    with pytest.raises(InputError, match=">= 0"):
        vis.colorize_labels(np.array([[-1]]))

    image = np.full((2, 2, 3), 0.4, np.float32)
    np.testing.assert_array_equal(vis.overlay_mask(image, labels, alpha=1.0), rgb)
    np.testing.assert_array_equal(vis.overlay_mask(image, labels, alpha=0.0), np.full((2, 2, 3), 102))
    half = vis.overlay_mask(image, labels)
    assert half.dtype == np.uint8 and half[0, 1].tolist() == [115, 51, 51]
    with pytest.raises(InputError, match="size"):
        vis.overlay_mask(np.zeros((4, 4, 3)), labels)


def test_heatmap_overlay_resizes_and_normalizes() -> None:
    image = np.zeros((32, 48, 3), np.uint8)
    heat = np.arange(12, dtype=np.float64).reshape(3, 4) * 1e5 - 7.0
    heat[0, 0] = np.nan
    out = vis.heatmap_overlay(image, heat, alpha=1.0)
    assert out.dtype == np.uint8 and out.shape == (32, 48, 3)
    hot, cold = out[-1, -1].astype(int), out[16, 0].astype(int)
    assert hot[0] > hot[2] and cold[2] > cold[0]
    flat = vis.heatmap_overlay(image, np.ones((4, 4)), alpha=0.5)
    assert flat.shape == (32, 48, 3)
    with pytest.raises(InputError, match="alpha"):
        vis.heatmap_overlay(image, heat, alpha=2.0)
