"""Low-resolution depth simulation: alignment, PIL parity, hole-aware bicubic, noise, holes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from densepac.check import check_scale
from densepac.depth.degrade import (
    KINECT_V1_INV_DEPTH_STEP,
    add_depth_noise,
    add_holes,
    downsample_area,
    downsample_bicubic,
    downsample_point,
    simulate_lr,
)
from densepac.errors import InputError


def _ramp(h: int = 32, w: int = 48) -> np.ndarray:
    """Depth encoding the HR row: depth[y, x] = 1 + y / 10 (+ x / 1000)."""
    y, x = np.mgrid[0:h, 0:w]
    return (1.0 + y / 10.0 + x / 1000.0).astype(np.float32)


# --------------------------------------------------------------------------- point


@pytest.mark.parametrize("scale", [1, 2, 3, 4, 8])
def test_point_picks_pixel_nearest_lr_centre(scale):
    d = _ramp()[: 32 - 32 % scale, : 48 - 48 % scale]
    lr = downsample_point(d, scale)
    assert lr.shape == (d.shape[0] // scale, d.shape[1] // scale)
    rows = np.round((lr[:, 0] - 1.0) * 10.0).astype(int)
    centres = scale * np.arange(lr.shape[0]) + (scale - 1) / 2.0  # align_corners=False
    assert np.all(np.abs(rows - centres) <= 0.5)
    assert np.array_equal(rows, scale * np.arange(lr.shape[0]) + scale // 2)


def test_point_keeps_missing_and_cleans_nonfinite():
    d = np.full((8, 8), 2.0, dtype=np.float32)
    d[2, 2] = np.nan
    d[6, 6] = np.inf
    d[2, 6] = -1.0
    lr = downsample_point(d, 4)
    assert np.array_equal(lr, np.array([[0.0, 0.0], [2.0, 0.0]], dtype=np.float32))
    assert np.isnan(d[2, 2])  # input untouched


# --------------------------------------------------------------------------- area


def test_area_hand_computed_with_missing_blocks():
    d = np.array(
        [
            [1.0, 2.0, 4.0, 0.0, 0.0, np.nan],
            [3.0, 6.0, np.nan, -1.0, 0.0, 0.0],
            [1.0, 1.0, 5.0, 5.0, 2.0, 4.0],
            [1.0, 1.0, 5.0, 5.0, 6.0, 8.0],
        ],
        dtype=np.float32,
    )
    expected = np.array(
        [
            [3.0, 4.0, 0.0],  # (1+2+3+6)/4; one valid pixel of four; none valid
            [1.0, 5.0, 5.0],
        ],
        dtype=np.float32,
    )
    assert np.array_equal(downsample_area(d, 2), expected)
    assert np.isnan(d[0, 5])  # input untouched


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_area_blocks_are_centred_on_lr_pixels(scale):
    # Depth linear in the row: a block mean is the depth at the block centre, which must
    # be the LR pixel centre s*i + (s-1)/2 of the align_corners=False convention.
    d = _ramp()[: 32 - 32 % scale, : 48 - 48 % scale]
    lr = downsample_area(d, scale)
    assert lr.shape == (d.shape[0] // scale, d.shape[1] // scale)
    cy = scale * np.arange(lr.shape[0]) + (scale - 1) / 2.0
    cx = scale * np.arange(lr.shape[1]) + (scale - 1) / 2.0
    np.testing.assert_allclose(lr, 1.0 + cy[:, None] / 10.0 + cx[None, :] / 1000.0, rtol=1e-6)


# --------------------------------------------------------------------------- bicubic


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_bicubic_matches_pil_without_holes(scale):
    rng = np.random.default_rng(0)
    d = rng.uniform(0.5, 5.0, size=(32, 48)).astype(np.float32)
    ref = np.asarray(Image.fromarray(d, mode="F").resize((48 // scale, 32 // scale), Image.BICUBIC))
    np.testing.assert_allclose(downsample_bicubic(d, scale), ref, atol=1e-5)


def test_bicubic_ignores_missing_pixels():
    d = np.full((32, 32), 3.0, dtype=np.float32)
    d[::3, ::2] = 0.0  # scattered holes: every LR pixel keeps most of its support
    lr = downsample_bicubic(d, 4)
    np.testing.assert_allclose(lr, 3.0, rtol=1e-6)


def test_bicubic_marks_unsupported_pixels_missing():
    d = np.full((32, 32), 3.0, dtype=np.float32)
    d[:16, :16] = 0.0
    lr = downsample_bicubic(d, 8)
    assert lr[0, 0] == 0.0  # whole support missing
    assert lr[3, 3] == pytest.approx(3.0)
    assert np.all((lr == 0) | np.isclose(lr, 3.0))


def test_bicubic_overshoot_clipped_at_depth_edges():
    d = np.full((32, 32), 10.0, dtype=np.float32)
    d[:, :13] = 0.5
    lr = downsample_bicubic(d, 4)
    assert lr.min() >= 0.5 and lr.max() <= 10.0


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("scale", [0, -2, 2.5, "8", True, None])
def test_bad_scale(scale):
    with pytest.raises(InputError, match="scale"):
        check_scale(scale)


def test_float_integral_scale_accepted():
    assert check_scale(4.0) == 4


@pytest.mark.parametrize("fn", [downsample_point, downsample_area, downsample_bicubic])
def test_indivisible_shape_says_crop(fn):
    with pytest.raises(InputError, match="crop it to 24x40"):
        fn(np.ones((30, 44), dtype=np.float32), 8)


@pytest.mark.parametrize("shape", [(4,), (2, 4, 4), (0, 4)])
def test_bad_shape(shape):
    with pytest.raises(InputError, match="2-D"):
        downsample_point(np.ones(shape, dtype=np.float32), 2)


# --------------------------------------------------------------------------- noise


def test_noise_grows_with_depth_squared():
    rng = np.random.default_rng(0)
    near = add_depth_noise(np.full((100, 100), 1.0, np.float32), rng, sigma=0.002)
    far = add_depth_noise(np.full((100, 100), 4.0, np.float32), rng, sigma=0.002)
    assert near.std() == pytest.approx(0.002, rel=0.1)
    assert far.std() / near.std() == pytest.approx(16.0, rel=0.1)
    assert far.mean() == pytest.approx(4.0, abs=0.01)


def test_noise_deterministic_and_keeps_missing():
    d = np.full((16, 16), 2.0, np.float32)
    d[3:6, 3:6] = 0.0
    a = add_depth_noise(d, 5, sigma=0.01)
    b = add_depth_noise(d, np.random.default_rng(5), sigma=0.01)
    assert np.array_equal(a, b)
    assert np.all(a[3:6, 3:6] == 0) and np.all(a[d > 0] > 0)


def test_quantisation_on_inverse_depth_grid():
    d = np.linspace(0.6, 4.0, 200, dtype=np.float32)[None, :]
    q = add_depth_noise(d, 0, sigma=0.0, quant_step=KINECT_V1_INV_DEPTH_STEP)
    k = 1.0 / (q.astype(np.float64) * KINECT_V1_INV_DEPTH_STEP)
    np.testing.assert_allclose(k, np.round(k), atol=1e-3)
    # Kinect-like step: about 4.6 cm at 4 m, under a millimetre at 0.6 m.
    assert np.abs(q - d).max() < 0.03


def test_noise_rejects_negative_sigma():
    with pytest.raises(InputError, match="sigma"):
        add_depth_noise(np.ones((4, 4)), 0, sigma=-1.0)


# --------------------------------------------------------------------------- holes


def _step_scene() -> np.ndarray:
    """Far wall at 4 m with a near square at 1 m in columns 20..35."""
    d = np.full((48, 64), 4.0, dtype=np.float32)
    d[16:32, 20:36] = 1.0
    return d


def test_shadow_falls_left_of_occluder_on_far_side():
    out = add_holes(_step_scene(), 0, amount=0.0, shadow_width=3, edge_dropout=0.0, specular=0)
    holes = out == 0
    assert holes[16:32, 17:20].all()  # 3 px shadow left of the square
    assert not holes[16:32, 20:].any()  # never on the occluder, nor on its right
    assert not holes[:16].any() and not holes[32:].any()


def test_slanted_planes_and_creases_get_no_edge_holes():
    # A steep floor meeting a wall: continuous depth, large relative steps per pixel.
    y = (np.arange(30, dtype=np.float64) + 0.5 - 15) / 30.0
    inv = np.maximum(y / 1.2, 1.0 / 6.0)  # wall at 6 m above, floor below
    d = np.repeat((1.0 / inv)[:, None], 40, axis=1).astype(np.float32)
    out = add_holes(d, 0, amount=0.0, shadow_width=2, edge_dropout=1.0, specular=0)
    assert np.array_equal(out, d)


def test_blob_amount_and_no_new_depth():
    d = np.full((64, 64), 2.0, dtype=np.float32)
    d[:4] = 0.0
    out = add_holes(d, 1, amount=0.1, shadow_width=0, edge_dropout=0.0, specular=0)
    removed = (out == 0) & (d > 0)
    assert 0.06 < removed.mean() < 0.14
    assert np.all(out[:4] == 0)
    assert np.all((out == 0) | (out == d))


def test_specular_dropouts():
    d = np.full((64, 64), 2.0, dtype=np.float32)
    out = add_holes(d, 2, amount=0.0, shadow_width=0, edge_dropout=0.0, specular=4)
    assert 0 < np.sum(out == 0) < 0.1 * out.size


def test_holes_bad_arguments():
    with pytest.raises(InputError, match="amount"):
        add_holes(np.ones((8, 8)), 0, amount=1.5)


# --------------------------------------------------------------------------- pipeline


def test_simulate_lr_clean_equals_protocols():
    d = _ramp()
    assert np.array_equal(simulate_lr(d, 8, "point"), downsample_point(d, 8))
    assert np.array_equal(simulate_lr(d, 8, "area"), downsample_area(d, 8))
    assert np.array_equal(simulate_lr(d, 8, "bicubic"), downsample_bicubic(d, 8))


def test_simulate_lr_noise_and_holes_are_seeded():
    d = _step_scene()
    a = simulate_lr(d, 4, "point", noise=0.01, holes=0.05, rng=3)
    b = simulate_lr(d, 4, "point", noise=0.01, holes=0.05, rng=3)
    c = simulate_lr(d, 4, "point", noise=0.01, holes=0.05, rng=4)
    assert a.shape == (12, 16)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert 0 < np.mean(a == 0) < 0.5


def test_simulate_lr_bad_protocol():
    with pytest.raises(InputError, match="protocol"):
        simulate_lr(_ramp(), 8, "nearest")


# --------------------------------------------------------------------------- realistic sensors ("mix")


def _sensor_ramp(h=16, w=24):
    return np.linspace(1.0, 3.0, h * w, dtype=np.float32).reshape(h, w)


def test_sensor_without_degradations_is_the_plain_sampling():
    from densepac.depth.degrade import SensorModel, simulate_sensor

    d = _sensor_ramp()
    d[3, 5] = 0
    clean = dict(blur=0.0, shift=0.0, p_quantize=0.0, dark=0.0)
    lr, protocol = simulate_sensor(d, 4, np.random.default_rng(0), sensor=SensorModel(p_point=1.0, p_area=0.0, **clean))
    assert protocol == "point"
    np.testing.assert_array_equal(lr, downsample_point(d, 4))
    lr, protocol = simulate_sensor(d, 4, np.random.default_rng(0), sensor=SensorModel(p_point=0.0, p_area=1.0, **clean))
    assert protocol == "area"
    np.testing.assert_array_equal(lr, downsample_area(d, 4))


def test_shift_depth_moves_whole_pixels_and_repeats_borders():
    from densepac.depth.degrade import shift_depth

    d = np.arange(1, 13, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(shift_depth(d, 1, 0), [[1, 2, 3, 4], [1, 2, 3, 4], [5, 6, 7, 8]])
    np.testing.assert_array_equal(shift_depth(d, 0, -1), [[2, 3, 4, 4], [6, 7, 8, 8], [10, 11, 12, 12]])


def test_blur_depth_mixes_across_edges_and_keeps_holes():
    from densepac.depth.degrade import blur_depth

    d = np.ones((9, 10), np.float32)
    d[:, 5:] = 3.0
    d[4, 2] = 0
    out = blur_depth(d, 1.5)
    assert out[4, 2] == 0  # a hole stays a hole
    assert np.allclose(out[:, 0], 1.0, atol=0.01) and np.allclose(out[:, -1], 3.0, atol=0.01)
    assert 1.2 < out[0, 4] < 2.0 < out[0, 5] < 2.8  # mixed near the edge, the way a footprint mixes
    np.testing.assert_array_equal(blur_depth(d, 0.0), d)
    flat = np.full((8, 8), 2.5, np.float32)
    flat[2:4, 2:4] = 0
    np.testing.assert_allclose(blur_depth(flat, 2.0)[flat > 0], 2.5, rtol=1e-6)  # holes do not pull depth down


def test_drop_dark_only_touches_dark_blocks():
    from densepac.depth.degrade import drop_dark

    lr = np.full((2, 3), 2.0, np.float32)
    rgb = np.ones((8, 12, 3), np.float32)
    rgb[:4, :4] = 0.02  # block (0, 0) is dark
    out = drop_dark(lr, rgb, 4, threshold=0.1, probability=1.0, rng=np.random.default_rng(0))
    assert out[0, 0] == 0 and (out.ravel()[1:] == 2.0).all()
    np.testing.assert_array_equal(drop_dark(lr, rgb, 4, 0.1, 0.0, np.random.default_rng(0)), lr)
    with pytest.raises(InputError, match="guide"):
        drop_dark(lr, rgb[:4], 4, 0.1, 1.0, np.random.default_rng(0))


def test_mix_is_seeded_and_draws_every_protocol():
    from densepac.depth.degrade import simulate_sensor

    d = _sensor_ramp(32, 32)
    rgb = np.random.default_rng(1).random((32, 32, 3)).astype(np.float32)
    a = simulate_lr(d, 4, "mix", noise=0.002, holes=0.05, rng=7, rgb=rgb)
    b = simulate_lr(d, 4, "mix", noise=0.002, holes=0.05, rng=7, rgb=rgb)
    np.testing.assert_array_equal(a, b)
    c, _ = simulate_sensor(d, 4, np.random.default_rng(7), rgb=rgb, noise=0.002, holes=0.05)
    np.testing.assert_array_equal(a, c)
    drawn = [simulate_sensor(d, 4, np.random.default_rng(i))[1] for i in range(300)]
    share = {p: drawn.count(p) / len(drawn) for p in ("point", "area", "bicubic")}
    assert abs(share["point"] - 0.4) < 0.1 and abs(share["area"] - 0.4) < 0.1 and abs(share["bicubic"] - 0.2) < 0.08
    assert a.shape == (8, 8) and (a >= 0).all()
