"""The real scene (Middlebury 2014 Motorcycle, shipped with scikit-image) and its LR versions."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from densepac.depth.degrade import downsample_area, downsample_point
from densepac.depth.real import centre_crop, load_motorcycle, make_lr, motorcycle_depth
from densepac.errors import InputError


@pytest.fixture(scope="module")
def scene() -> dict:
    pytest.importorskip("skimage", reason="the Motorcycle scene ships with scikit-image: pip install densepac[real]")
    return load_motorcycle()


@pytest.fixture(scope="module")
def disparity() -> np.ndarray:
    data = pytest.importorskip("skimage.data", reason="the Motorcycle scene ships with scikit-image")
    return centre_crop(data.stereo_motorcycle()[2], 16)


def test_shapes_divisible_by_16(scene):
    rgb, depth = scene["rgb"], scene["depth"]
    assert depth.shape == (496, 736) and rgb.shape == (*depth.shape, 3)
    assert depth.dtype == np.float32 and rgb.dtype == np.float32
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0 and rgb.max() > 0.5
    assert scene["name"] == "middlebury2014_motorcycle"


def test_metres_in_plausible_range(scene):
    valid = scene["depth"][scene["depth"] > 0]
    assert np.isfinite(scene["depth"]).all()
    assert 2.0 < valid.min() < 2.2 and 4.9 < valid.max() < 5.2


def test_missing_exactly_where_disparity_invalid(scene, disparity):
    invalid = ~(np.isfinite(disparity) & (disparity > 0))
    assert 0.06 < invalid.mean() < 0.08
    assert np.array_equal(scene["depth"] == 0, invalid)


def test_depth_from_disparity_calibration():
    d = np.array([[10.0, np.nan, 0.0, -3.0, np.inf]], dtype=np.float32)
    z = motorcycle_depth(d)
    assert z[0, 0] == pytest.approx(0.193001 * 3979.911 / (40.0 + 124.343), rel=1e-6)
    assert np.array_equal(z[0, 1:], np.zeros(4, dtype=np.float32))


def test_centre_crop():
    a = np.arange(7 * 10).reshape(7, 10)
    assert np.array_equal(centre_crop(a, 4), a[1:5, 1:9])
    with pytest.raises(InputError, match="multiple"):
        centre_crop(a, 0)
    with pytest.raises(InputError, match="smaller multiple"):
        centre_crop(a, 8)


def test_make_lr_reuses_degradations():
    rng = np.random.default_rng(0)
    d = rng.uniform(1.0, 4.0, (32, 48)).astype(np.float32)
    d[:8, :8] = 0.0
    assert np.array_equal(make_lr(d, 8, "point"), downsample_point(d, 8))
    assert np.array_equal(make_lr(d, 8, "area"), downsample_area(d, 8))
    with pytest.raises(InputError, match="sampling"):
        make_lr(d, 8, "bicubic")


def test_missing_scikit_image_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_skimage(name, *args, **kwargs):
        if name == "skimage" or name.startswith("skimage."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_skimage)
    with pytest.raises(InputError, match="pip install scikit-image"):
        load_motorcycle()
