"""Procedural RGB-D scenes: determinism, ranges, the hard cases they must contain, speed."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from densepac.data.procedural import find_natural_images, scene_seed
from densepac.depth.synthetic import DEMO_SCALE, DEMO_SIZE, make_demo_sample, make_rgbd_scene
from densepac.errors import InputError

SAMPLES = Path(__file__).resolve().parents[2] / "datasets" / "samples"
SMALL = dict(height=48, width=64)


def test_output_types_and_ranges():
    scene = make_rgbd_scene(3, **SMALL)
    rgb, depth = scene["rgb"], scene["depth"]
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.float32
    assert depth.shape == (48, 64) and depth.dtype == np.float32
    assert scene["object_id"].shape == (48, 64)
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    assert np.isfinite(depth).all()
    assert depth.min() >= 0.5 * 0.5 and depth.max() <= 10.0 * 3.0  # near/far times the depth_scale range
    flat = make_rgbd_scene(3, **SMALL, depth_scale=(1, 1))["depth"]
    assert flat.min() >= 0.5 and flat.max() <= 10.0


def test_depth_scale_scales_depth_only():
    a = make_rgbd_scene(4, **SMALL, depth_scale=(1, 1))
    b = make_rgbd_scene(4, **SMALL, depth_scale=(2, 2))
    np.testing.assert_array_equal(a["rgb"], b["rgb"])
    np.testing.assert_allclose(b["depth"], 2 * a["depth"], rtol=1e-6)


def test_rods_are_thin_and_in_front():
    seen = 0
    for seed in range(6):
        kw = dict(depth_scale=(1, 1), blur_sigma=0.0, max_cylinders=0)
        plain = make_rgbd_scene(seed, 96, 128, max_rods=0, **kw)
        rods = make_rgbd_scene(seed, 96, 128, max_rods=6, **kw)
        changed = rods["depth"] != plain["depth"]
        seen += int(changed.any())
        assert (rods["depth"][changed] < plain["depth"][changed]).all()  # drawn in front
        assert changed.mean() < 0.2  # thin structures, not big surfaces
        # Everything drawn before the rods is the same scene: rods only add pixels.
        np.testing.assert_array_equal(rods["rgb"][~changed], plain["rgb"][~changed])
    assert seen >= 3


def test_deterministic_from_seed():
    a = make_rgbd_scene(11, **SMALL)
    b = make_rgbd_scene(11, **SMALL)
    c = make_rgbd_scene(12, **SMALL)
    assert np.array_equal(a["rgb"], b["rgb"]) and np.array_equal(a["depth"], b["depth"])
    assert not np.array_equal(a["depth"], c["depth"])


def test_geometry_does_not_depend_on_natural_images():
    plain = make_rgbd_scene(5, **SMALL, natural_images=None, p_natural=1.0)
    photo = np.zeros((32, 32, 3), dtype=np.float32)
    photo[..., 0] = np.linspace(0, 1, 32)[None, :]
    photo[..., 2] = np.linspace(0, 1, 32)[:, None]
    textured = make_rgbd_scene(5, **SMALL, natural_images=[photo], p_natural=1.0)
    assert np.array_equal(plain["depth"], textured["depth"])
    assert not np.array_equal(plain["rgb"], textured["rgb"])


def test_depth_range_spans_near_and_far_over_seeds():
    depths = np.stack([make_rgbd_scene(s, **SMALL)["depth"] for s in range(12)])
    assert depths.min() < 2.0 and depths.max() > 5.0


def _neighbour_pairs(scene: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Color difference, relative depth jump and same-object flag of horizontal neighbours."""
    rgb, depth, ids = scene["rgb"], scene["depth"], scene["object_id"]
    color = np.abs(rgb[:, 1:] - rgb[:, :-1]).max(axis=2)
    jump = np.abs(depth[:, 1:] - depth[:, :-1]) / np.minimum(depth[:, 1:], depth[:, :-1])
    same = ids[:, 1:] == ids[:, :-1]
    return color, jump, same


def test_color_edges_without_depth_edges():
    # Texture, stripes and decals: strong color steps inside one smooth surface.
    found = 0
    for seed in range(6):
        color, jump, same = _neighbour_pairs(make_rgbd_scene(seed, **SMALL, rgb_noise=0.0, blur_sigma=0.0))
        found += int(np.sum((color > 0.25) & (jump < 0.01) & same))
    assert found > 20


def test_depth_edges_with_weak_color_contrast():
    weak = strong = 0
    for seed in range(6):
        kwargs = dict(SMALL, rgb_noise=0.0, blur_sigma=0.0)
        color, jump, _ = _neighbour_pairs(make_rgbd_scene(seed, p_camouflage=1.0, **kwargs))
        weak += int(np.sum((jump > 0.1) & (color < 0.06)))
        color0, jump0, _ = _neighbour_pairs(make_rgbd_scene(seed, p_camouflage=0.0, **kwargs))
        strong += int(np.sum((jump0 > 0.1) & (color0 < 0.06)))
    assert weak > 20
    assert weak > 2 * strong


def test_depth_edges_follow_object_boundaries():
    inside = total = 0
    for seed in range(6):
        _, jump, same = _neighbour_pairs(make_rgbd_scene(seed, **SMALL))
        total += int(np.sum(jump > 0.2))
        # Inside one object only a face seen at a grazing angle changes depth this fast.
        inside += int(np.sum((jump > 0.2) & same))
    assert total > 50
    assert inside < 0.1 * total


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(bogus=1), "unknown option"),
        (dict(p_floor=2.0), "p_floor"),
        (dict(min_objects=5, max_objects=2), "min_objects"),
        (dict(near=5.0, far=1.0), "near"),
        (dict(natural_images="somewhere"), "natural_images"),
        (dict(natural_images=[np.zeros((4, 4))]), "natural image"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(InputError, match=match):
        make_rgbd_scene(0, **SMALL, **kwargs)


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_bad_seed(seed):
    with pytest.raises(InputError, match="seed"):
        make_rgbd_scene(seed, **SMALL)


def test_too_small():
    with pytest.raises(InputError, match="too small"):
        make_rgbd_scene(0, 4, 64)


def test_the_real_validation_scene_is_never_a_texture():
    names = {p.stem for p in find_natural_images()}
    assert not any(n.startswith("motorcycle") for n in names)


def test_find_natural_images_returns_existing_paths():
    for path in find_natural_images():
        assert path.is_file()
    # "auto" works whether or not this machine has any.
    make_rgbd_scene(1, **SMALL, natural_images="auto", p_natural=1.0)


def test_scene_seed_is_stable_and_distinct():
    assert scene_seed(0, 1) == scene_seed(0, 1)
    assert len({scene_seed(0, i) for i in range(50)} | {scene_seed(1, i) for i in range(50)}) == 100


def test_fast_enough():
    make_rgbd_scene(0)  # warm caches (natural-image lookup, OpenCV)
    best = np.inf
    for seed in range(3):
        start = time.perf_counter()
        make_rgbd_scene(seed, 240, 320)
        best = min(best, time.perf_counter() - start)
    assert best < 0.1


def test_committed_demo_sample_matches_recipe():
    from densepac.io.depth import read_depth
    from densepac.io.images import read_image

    sample = make_demo_sample()
    h, w = DEMO_SIZE
    rgb = read_image(SAMPLES / "scene_rgb.png")
    gt = read_depth(SAMPLES / "scene_depth_gt.png")
    lr = read_depth(SAMPLES / "scene_depth_lr.png")
    assert rgb.shape == (h, w, 3) and gt.shape == (h, w)
    assert lr.shape == (h // DEMO_SCALE, w // DEMO_SCALE)
    # PNG stores 8-bit color and whole millimetres.
    assert np.mean(np.abs(rgb - sample["rgb"]) <= 1.0 / 255 + 1e-6) > 0.999
    assert np.mean(np.abs(gt - sample["depth"]) <= 0.0006) > 0.999
    assert np.array_equal(lr == 0, sample["depth_lr"] == 0)
    assert 0 < np.mean(lr == 0) < 0.2  # "a few holes"
    assert sum(p.stat().st_size for p in SAMPLES.glob("scene_*.png")) < 300_000


def test_natural_image_files_are_used(tmp_path):
    from densepac.io.images import write_image

    y, x = np.mgrid[0:100, 0:120]
    photo = np.stack([x / 120.0, y / 100.0, 0.5 + 0.4 * np.sin(x / 7.0)], axis=-1)
    path = tmp_path / "photo.png"
    write_image(path, photo)
    plain = make_rgbd_scene(9, **SMALL, natural_images=None, p_natural=1.0)
    textured = make_rgbd_scene(9, **SMALL, natural_images=[path], p_natural=1.0)
    assert np.array_equal(plain["depth"], textured["depth"])
    assert not np.array_equal(plain["rgb"], textured["rgb"])
    with pytest.raises(InputError, match="does not exist"):
        make_rgbd_scene(9, **SMALL, natural_images=[tmp_path / "missing.png"])


def _load_script():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "datasets" / "make_synthetic_rgbd.py"
    spec = importlib.util.spec_from_file_location("make_synthetic_rgbd", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_script_writes_folder_layout(tmp_path):
    from click.testing import CliRunner

    from densepac.depth.datasets import FolderDepth, SyntheticDepth

    script = _load_script()
    out = tmp_path / "syn"
    args = [str(out), "--num", "2", "--seed", "3", "--size", "32x48", "--lr-scale", "8", "--holes", "0.05"]
    result = CliRunner().invoke(script.main, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "rgb").iterdir()) == ["000000.png", "000001.png"]
    folder = FolderDepth(out, scale=8)
    assert folder.lr_files is not None  # depth_lr/ picked up
    on_the_fly = SyntheticDepth(2, seed=3, size=(32, 48), scale=8)
    for i in range(2):
        np.testing.assert_allclose(folder[i]["depth"], on_the_fly[i]["depth"], atol=6e-4)
    again = CliRunner().invoke(script.main, args)
    assert again.exit_code == 2 and "already exists" in again.output
    bad = CliRunner().invoke(script.main, [str(out), "--size", "30x48", "--lr-scale", "8"])
    assert bad.exit_code == 2 and "divisible" in bad.output
