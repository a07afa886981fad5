import numpy as np
import pytest

from densepac.errors import InputError
from densepac.inference import check_scale, default_depth_model, upsample_depth
from densepac.models import create_model


def test_check_scale():
    assert check_scale((30, 40), (240, 320), None) == 8
    assert check_scale((30, 40), (240, 320), 8) == 8
    with pytest.raises(InputError, match="240x320 is 8x the depth 30x40, not --scale 4"):
        check_scale((30, 40), (240, 320), 4)
    with pytest.raises(InputError, match="expected a guide of 240x320"):
        check_scale((30, 40), (241, 320), None)
    with pytest.raises(InputError, match="factors 2 to"):
        check_scale((30, 40), (30, 40), None)


def test_upsample_depth_tiling_matches_untiled():
    rng = np.random.default_rng(0)
    lr = (rng.random((20, 30)) + 1).astype(np.float32)
    rgb = rng.random((80, 120, 3)).astype(np.float32)
    m = create_model("joint_bilateral")
    np.testing.assert_allclose(upsample_depth(m, lr, rgb, tile=7), upsample_depth(m, lr, rgb, tile=0), atol=1e-5)


def test_default_model_is_a_depth_model():
    assert create_model(default_depth_model(8)).task == "depth"


def test_tile_with_no_valid_depth_is_filled_from_the_image():
    rng = np.random.default_rng(1)
    lr = (rng.random((24, 24)) + 1).astype(np.float32)
    lr[:12, :12] = 0  # the whole first tile (and its margin's inner part) is missing
    rgb = rng.random((96, 96, 3)).astype(np.float32)
    for name in ("bicubic", "pac_jointupsample_x4"):
        m = create_model(name)
        tiled = upsample_depth(m, lr, rgb, tile=8)
        assert np.isfinite(tiled).all()
        np.testing.assert_allclose(tiled, upsample_depth(m, lr, rgb, tile=0), atol=1e-4)
    assert (upsample_depth(create_model("bicubic"), lr, rgb, tile=8)[:48, :48] >= 1).all()  # filled, not zero
