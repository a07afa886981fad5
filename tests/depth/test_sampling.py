"""Telling point from area sampling by the depth map alone (``--sampling auto``)."""

import numpy as np
import pytest

from densepac.depth.degrade import simulate_lr
from densepac.depth.sampling import estimate_sampling, mixed_step_share, resolve_sampling
from densepac.depth.synthetic import make_rgbd_scene
from densepac.errors import InputError


def _steps(offset: int, n: int = 12) -> np.ndarray:
    """A map of vertical steps 1 m -> 2 m, the step at HR column ``offset`` of a 4-px block."""
    hr = np.ones((16, 64), np.float32)
    hr[:, 24 + offset :] = 2.0
    return hr


def test_hand_made_steps():
    # Area sampling of a step inside a block gives an in-between value; point sampling never does.
    area = simulate_lr(_steps(1), 4, "area")
    point = simulate_lr(_steps(1), 4, "point")
    assert sorted(set(np.round(area[0], 2))) == [1.0, 1.75, 2.0]
    assert sorted(set(point[0])) == [1.0, 2.0]
    assert mixed_step_share(area)[0] == 1.0 and mixed_step_share(point)[0] == 0.0


@pytest.mark.parametrize("scale", [4, 8, 16])
def test_estimates_the_sampling_of_procedural_scenes(scale):
    for seed in range(3):
        depth = make_rgbd_scene(900 + seed, 240, 320)["depth"]
        assert estimate_sampling(simulate_lr(depth, scale, "point")) == "point"
        assert estimate_sampling(simulate_lr(depth, scale, "area")) == "area"
        assert estimate_sampling(simulate_lr(depth, scale, "bicubic")) == "area"


def test_a_map_without_steps_is_taken_as_area_and_auto_resolves():
    flat = np.full((10, 10), 3.0, np.float32)
    assert mixed_step_share(flat) == (0.0, 0) and estimate_sampling(flat) == "area"
    assert resolve_sampling("point", flat) == "point"
    assert resolve_sampling("auto", flat) == "area"
    with pytest.raises(InputError, match="sampling"):
        resolve_sampling("nearest", flat)
