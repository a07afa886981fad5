"""Procedural segmentation scenes, their dataset and the VOC-layout writer script."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from densepac.data.procedural import scene_seed
from densepac.errors import InputError
from densepac.segmentation.datasets import VOCSegmentation
from densepac.segmentation.synthetic import SyntheticSegmentation, class_color, make_seg_scene
from densepac.segmentation.transforms import SegTransform


def test_scene_format_and_determinism():
    a = make_seg_scene(3, 48, 64, num_classes=4)
    assert a["image"].shape == (48, 64, 3) and a["image"].dtype == np.float32
    assert a["label"].shape == (48, 64) and a["label"].dtype == np.int64
    assert a["image"].min() >= 0.0 and a["image"].max() <= 1.0
    assert set(np.unique(a["label"])) <= {0, 1, 2, 3}
    b = make_seg_scene(3, 48, 64, num_classes=4)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
    c = make_seg_scene(4, 48, 64, num_classes=4)
    assert not np.array_equal(a["label"], c["label"])


def test_every_class_present():
    ds = SyntheticSegmentation(8, seed=0, size=(64, 64), num_classes=6)
    seen: set[int] = set()
    for i in range(len(ds)):
        classes = set(torch.unique(ds[i]["label"]).tolist())
        assert 0 in classes and len(classes) >= 3, classes
        seen |= classes
    assert seen == set(range(6))


def test_class_colors_are_distinct():
    colors = np.stack([class_color(c) for c in range(1, 11)])
    dist = np.abs(colors[:, None] - colors[None]).sum(-1) + np.eye(10) * 9
    assert dist.min() > 0.1


def test_thin_structures_are_thin():
    # Thin structures only: a 3x3 opening (erase anything narrower than 3 px) removes most
    # of their pixels, which no filled object would lose.
    kept = total = 0
    for seed in range(4):
        scene = make_seg_scene(seed, 64, 64, min_objects=0, max_objects=0, min_thin=2, max_thin=2, p_decal=0.0)
        fg = (scene["label"] > 0).astype(np.uint8)
        opened = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((4, 4), np.uint8))
        kept, total = kept + int(opened.sum()), total + int(fg.sum())
    assert total > 100 and kept < 0.2 * total


def _boundary_contrast(image: np.ndarray, label: np.ndarray) -> float:
    """Mean color difference of horizontally/vertically adjacent pixels of different classes."""
    diffs = []
    for axis in (0, 1):
        a = np.moveaxis(image, axis, 0)
        la = np.moveaxis(label, axis, 0)
        step = np.abs(a[1:] - a[:-1]).sum(-1)
        diffs.append(step[la[1:] != la[:-1]])
    return float(np.concatenate(diffs).mean())


def test_camouflage_weakens_class_boundaries():
    common = dict(min_thin=0, max_thin=0, p_decal=0.0, rgb_noise=0.0, blur_sigma=0.0, p_horizon=0.0)
    plain = [_boundary_contrast(**make_seg_scene(s, 64, 64, p_camouflage=0.0, **common)) for s in range(6)]
    hidden = [_boundary_contrast(**make_seg_scene(s, 64, 64, p_camouflage=1.0, **common)) for s in range(6)]
    assert np.mean(hidden) < 0.6 * np.mean(plain)


def test_texture_edges_inside_classes():
    # Many strong color edges are not class boundaries (stripes, checkers, horizon, decals).
    inside = strong = 0
    for seed in range(4):
        scene = make_seg_scene(seed, 64, 64, rgb_noise=0.0, blur_sigma=0.0, p_decal=1.0, p_horizon=1.0)
        image, label = scene["image"], scene["label"]
        step = np.abs(image[:, 1:] - image[:, :-1]).sum(-1) > 0.3
        same = label[:, 1:] == label[:, :-1]
        strong, inside = strong + int(step.sum()), inside + int((step & same).sum())
    assert inside > 0.3 * strong


def test_void_border():
    scene = make_seg_scene(1, 64, 64, void_border=1)
    label = scene["label"]
    assert (label == 255).any()
    plain = make_seg_scene(1, 64, 64)["label"]
    keep = label != 255
    np.testing.assert_array_equal(label[keep], plain[keep])


def test_scene_argument_errors():
    with pytest.raises(InputError, match="unknown option"):
        make_seg_scene(0, bogus=1)
    with pytest.raises(InputError, match="num_classes"):
        make_seg_scene(0, num_classes=1)
    with pytest.raises(InputError, match="too small"):
        make_seg_scene(0, 8, 64)
    with pytest.raises(InputError, match="seed"):
        make_seg_scene(-1)
    with pytest.raises(InputError, match="min_objects <= max_objects"):
        make_seg_scene(0, min_objects=5, max_objects=2)
    with pytest.raises(InputError, match="probability"):
        make_seg_scene(0, p_camouflage=2.0)


def test_scene_is_fast():
    make_seg_scene(0)
    start = time.perf_counter()
    for seed in range(5):
        make_seg_scene(seed)
    assert (time.perf_counter() - start) / 5 < 0.1


def test_dataset_items():
    ds = SyntheticSegmentation(3, seed=5, size=(40, 48), num_classes=4)
    item = ds[2]
    assert item["image"].shape == (3, 40, 48) and item["label"].shape == (40, 48)
    assert item["name"] == "synthetic_seg_5_000002"
    scene = make_seg_scene(scene_seed(5, 2), 40, 48, 4)
    np.testing.assert_array_equal(item["label"].numpy(), scene["label"])
    np.testing.assert_array_equal(item["image"].permute(1, 2, 0).numpy(), scene["image"])
    aug = SyntheticSegmentation(3, seed=5, size=(40, 48), num_classes=4, transform=SegTransform(crop=(32, 32), seed=0))
    assert aug[0]["image"].shape == (3, 32, 32)
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(InputError, match="num_scenes"):
        SyntheticSegmentation(0)
    with pytest.raises(InputError, match="unknown option"):
        SyntheticSegmentation(2, scene_options={"nope": 1})


def _script():
    path = Path(__file__).resolve().parents[2] / "datasets" / "make_synthetic_seg.py"
    spec = importlib.util.spec_from_file_location("make_synthetic_seg", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_writer_script_round_trip(tmp_path):
    from click.testing import CliRunner

    out = tmp_path / "syn"
    args = [str(out), "--num", "5", "--val", "2", "--seed", "3", "--size", "32x40", "--num-classes", "4"]
    result = CliRunner().invoke(_script().main, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "JPEGImages").iterdir())[0] == "000000.png"
    train = VOCSegmentation(out, "train", num_classes=4)
    val = VOCSegmentation(out, "val", num_classes=4)
    assert len(train) == 3 and len(val) == 2 and val.names == ["000003", "000004"]
    ref = SyntheticSegmentation(5, seed=3, size=(32, 40), num_classes=4)[3]
    item = val[0]
    np.testing.assert_array_equal(item["label"].numpy(), ref["label"].numpy())
    # 8-bit PNG: within half a grey level.
    assert (item["image"] - ref["image"]).abs().max() <= 0.5 / 255 + 1e-6
    again = CliRunner().invoke(_script().main, args)
    assert again.exit_code == 2 and "already exists" in again.output
    bad = CliRunner().invoke(_script().main, [str(tmp_path / "x"), "--num", "3", "--val", "3"])
    assert bad.exit_code == 2 and "leaves no training scenes" in bad.output


def test_committed_segmentation_sample_matches_its_recipe():
    from pathlib import Path

    from densepac.io.images import read_image, read_label
    from densepac.segmentation.synthetic import make_seg_demo_sample

    samples = Path(__file__).resolve().parents[2] / "datasets" / "samples"
    scene = make_seg_demo_sample()
    image, label = read_image(samples / "seg_scene.png"), read_label(samples / "seg_labels.png")
    assert image.shape == (160, 160, 3) and np.mean(np.abs(image - scene["image"]) <= 1.0 / 255 + 1e-6) > 0.999
    np.testing.assert_array_equal(label, scene["label"])
