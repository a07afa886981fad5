"""Depth inference on numpy arrays: scale checks, tiling, memory budgets."""

import numpy as np
import pytest
import torch

from densepac.depth.inference import (
    default_depth_model,
    depth_memory_model,
    depth_tiles_for_budget,
    resolve_scale,
    upsample_depth,
)
from densepac.errors import InputError
from densepac.models import create_model
from densepac.tiling import plan_tiles


def test_resolve_scale():
    assert resolve_scale((30, 40), (240, 320), None) == 8
    assert resolve_scale((30, 40), (240, 320), 8) == 8
    with pytest.raises(InputError, match="240x320 is 8x the depth 30x40, not --scale 4"):
        resolve_scale((30, 40), (240, 320), 4)
    with pytest.raises(InputError, match="expected a guide of 240x320"):
        resolve_scale((30, 40), (241, 320), None)
    with pytest.raises(InputError, match="factors 2 to"):
        resolve_scale((30, 40), (30, 40), None)


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


def _depth_pair(h=24, w=40, s=4, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((h, w)) + 1).astype(np.float32), rng.random((h * s, w * s, 3)).astype(np.float32)


def test_depth_budget_tiles_equal_untiled(nothing_in_use):
    lr, rgb = _depth_pair()
    m = create_model("joint_bilateral")
    d, g = torch.from_numpy(lr)[None, None], torch.from_numpy(rgb).permute(2, 0, 1)[None]
    memory = depth_memory_model(m, 4)
    whole = memory(24 * 40)
    assert depth_tiles_for_budget(m, d, g, whole) is None  # fits: untiled
    # Windows of 20 LR px (8 kept + 2 x 6 margin), and what is held after the model: the output,
    # a writer's copy and encoding (3 HR float32 maps), consistency's spread matrices, 8 LR maps.
    after = 3 * 24 * 40 * 16 * 4 + 4 * 8 * 4 * (24 * 24 + 40 * 40)
    budget = memory(20 * 20) + after + 24 * 40 * 4 * 8
    tile = depth_tiles_for_budget(m, d, g, budget)
    assert tile == (8, 8) and len(plan_tiles((24, 40), tile, m.tile_margin)) == 15
    untiled = upsample_depth(m, lr, rgb, tile=0)
    np.testing.assert_allclose(upsample_depth(m, lr, rgb, max_memory=budget), untiled, atol=1e-5)
    np.testing.assert_array_equal(upsample_depth(m, lr, rgb, max_memory=whole), untiled)
    with pytest.raises(InputError, match="give a tile size or a memory budget, not both"):
        upsample_depth(m, lr, rgb, tile=8, max_memory=budget)


def test_depth_budget_too_small_names_the_minimum():
    lr, rgb = _depth_pair()
    with pytest.raises(
        InputError,
        match=r"budget of 1 MiB is too small for joint_bilateral on a 40x24 LR px \(x4\) "
        r"image: give at least \d+ MiB",
    ):
        upsample_depth(create_model("joint_bilateral"), lr, rgb, max_memory="1MiB")


def test_depth_budget_in_a_real_process():
    lr, rgb = _depth_pair()
    m = create_model("joint_bilateral")
    np.testing.assert_array_equal(upsample_depth(m, lr, rgb, max_memory="64GiB"), upsample_depth(m, lr, rgb, tile=0))


@pytest.mark.parametrize("sampling", ["point", "area"])
def test_learned_output_is_consistent_with_its_source(sampling):
    """Sampled as the input was, the output reproduces every valid input pixel (learned models, refine)."""
    from densepac.depth.degrade import simulate_lr
    from densepac.depth.synthetic import make_rgbd_scene

    scene = make_rgbd_scene(3, 64, 96)
    lr = simulate_lr(scene["depth"], 4, sampling)
    lr[2, 3] = 0
    torch.manual_seed(0)
    for model, refine in ((create_model("pac_learned_jbu_x4"), False), (create_model("bicubic"), True)):
        out = upsample_depth(model, lr, scene["rgb"], tile=0, sampling=sampling, refine=refine)
        again = simulate_lr(out, 4, sampling)
        valid = lr > 0
        np.testing.assert_allclose(again[valid], lr[valid], rtol=1e-5)


def test_classical_models_are_left_as_they_are_unless_asked():
    lr, rgb = _depth_pair()
    m = create_model("joint_bilateral")
    plain = upsample_depth(m, lr, rgb, tile=0)
    np.testing.assert_array_equal(plain, upsample_depth(m, lr, rgb, tile=0, consistency=False))
    assert not np.array_equal(plain, upsample_depth(m, lr, rgb, tile=0, sampling="area", consistency=True))


def test_tiled_refinement_is_close_to_untiled():
    from densepac.depth.degrade import simulate_lr
    from densepac.depth.synthetic import make_rgbd_scene

    scene = make_rgbd_scene(4, 128, 192)
    lr = simulate_lr(scene["depth"], 4, "area")
    m = create_model("bicubic")
    whole = upsample_depth(m, lr, scene["rgb"], tile=0, sampling="area", refine=True)
    tiled = upsample_depth(m, lr, scene["rgb"], tile=16, sampling="area", refine=True)
    span = scene["depth"].max() - scene["depth"].min()
    assert np.sqrt(np.mean((whole - tiled) ** 2)) < 0.01 * span
    err = lambda x: np.sqrt(np.mean((x - scene["depth"]) ** 2))
    assert err(whole) < err(upsample_depth(m, lr, scene["rgb"], tile=0))  # refinement helps


def test_refinement_is_planned_under_the_budget_too(nothing_in_use, monkeypatch):
    from densepac.depth import inference

    lr, rgb = _depth_pair(h=80, w=80, s=2)
    d, g = torch.from_numpy(lr)[None, None], torch.from_numpy(rgb).permute(2, 0, 1)[None]
    init = torch.nn.functional.interpolate(d, scale_factor=2, mode="bicubic")
    assert inference.refine_tiles_for_budget(init, d, g, "area", 2**30) is None  # solved whole
    with pytest.raises(InputError, match="too small for the graph refinement") as e:
        inference.refine_tiles_for_budget(init, d, g, "area", 10**5)
    smallest = float(str(e.value).split("give at least ")[1].split(" MiB")[0]) * 2**20

    tiles = []
    real = inference.tiled_refine

    def spy(*args, tile, **kwargs):
        tiles.append(tile)
        return real(*args, tile=tile, **kwargs)

    monkeypatch.setattr(inference, "tiled_refine", spy)
    m = create_model("bicubic")
    whole = upsample_depth(m, lr, rgb, refine=True, sampling="area")
    tiled = upsample_depth(m, lr, rgb, refine=True, sampling="area", max_memory=int(smallest))
    assert tiles[0] == 512 and max(tiles[1]) < 80  # auto_tile(2) spans the map; the smallest budget cuts it
    assert np.abs(tiled - whole).max() < 0.05 * np.abs(whole).max()


@pytest.mark.parametrize("sampling", ["area", "point"])
def test_consistent_output_stays_in_the_input_depth_range(sampling):
    """Source consistency overshoots beside thin structures; the pipeline keeps depths the input had."""
    lr, rgb = _depth_pair(h=16, w=16, s=8)
    lr = np.full((16, 16), 6.0, dtype=np.float32)
    lr[:, 7] = 0.5  # a thin near pole in front of a far wall
    out = upsample_depth(create_model("bicubic"), lr, rgb, sampling=sampling, consistency=True)
    assert out.min() >= 0.05 and out.max() <= 60.0  # CONSISTENCY_RANGE: a tenth of the nearest, 10x the farthest


def test_a_model_tiled_under_a_budget_is_refined_too(nothing_in_use):
    """The model's plan (a tuple) and the refinement's plan are separate (this crashed once)."""
    from densepac.depth.inference import refine_tiles_for_budget

    lr, rgb = _depth_pair(h=96, w=96)
    m = create_model("joint_bilateral")
    d, g = torch.from_numpy(lr)[None, None], torch.from_numpy(rgb).permute(2, 0, 1)[None]

    def smallest(plan) -> int:
        with pytest.raises(InputError) as e:
            plan(10**4)
        return int(float(str(e.value).split("give at least ")[1].split(" MiB")[0]) * 2**20)

    budget = max(
        smallest(lambda b: depth_tiles_for_budget(m, d, g, b)),
        smallest(lambda b: refine_tiles_for_budget(g[:, :1], d, g, "area", b)),
    )
    assert depth_tiles_for_budget(m, d, g, budget) is not None  # the model runs in tiles
    out = upsample_depth(m, lr, rgb, refine=True, sampling="area", max_memory=budget)
    assert out.shape == rgb.shape[:2] and np.isfinite(out).all()
