"""`densepac upsample DEPTH_DIR GUIDE_DIR -o OUT_DIR` and the `densepac.upsample` one-liner."""

from pathlib import Path

import numpy as np
from click.testing import CliRunner

import densepac
from densepac.cli import main
from densepac.depth.degrade import simulate_lr
from densepac.depth.inference import upsample_depth
from densepac.depth.synthetic import make_rgbd_scene
from densepac.io.depth import read_depth
from densepac.io.images import write_image
from densepac.models import create_model


def _folders(root: Path) -> tuple[Path, Path]:
    depth_dir, guide_dir = root / "depth", root / "rgb"
    depth_dir.mkdir()
    guide_dir.mkdir()
    for i, name in enumerate(["a", "b", "c"]):
        scene = make_rgbd_scene(i, 32, 48)
        np.save(depth_dir / f"{name}.npy", simulate_lr(scene["depth"], 4, "area"))
        write_image(guide_dir / f"{name}.png", scene["rgb"])
    (depth_dir / "c.npy").write_bytes(b"garbage")  # a bad pair
    np.save(depth_dir / "lonely.npy", np.ones((8, 12), np.float32))  # no guide
    return depth_dir, guide_dir


def test_folders_of_pairs_write_the_good_ones_and_report_the_rest(tmp_path):
    depth_dir, guide_dir = _folders(tmp_path)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["upsample", str(depth_dir), str(guide_dir), "-o", str(out), "--model", "bicubic"])
    assert r.exit_code == 2, r.output
    assert sorted(p.name for p in out.iterdir()) == ["a.npy", "b.npy"]
    assert "skipped c:" in r.stderr and "skipped lonely: no guide" in r.stderr
    assert r.stderr.strip().splitlines()[-1] == "Error: 2 pair(s) skipped (listed above); the others were written"
    first = read_depth(out / "a.npy")
    assert first.shape == (32, 48)
    # Again without --overwrite: what was written stays, and is reported, not replaced.
    r = CliRunner().invoke(main, ["upsample", str(depth_dir), str(guide_dir), "-o", str(out), "--model", "bicubic"])
    assert r.exit_code == 2 and "skipped a:" in r.stderr and "already exists" in r.stderr
    np.testing.assert_array_equal(read_depth(out / "a.npy"), first)


def test_one_call_from_numpy():
    scene = make_rgbd_scene(7, 32, 48)
    lr = simulate_lr(scene["depth"], 4, "point")
    out = densepac.upsample(lr, scene["rgb"])
    assert out.shape == (32, 48) and out.dtype == np.float32
    model = create_model("bicubic")
    np.testing.assert_array_equal(
        densepac.upsample(lr, scene["rgb"], model=model, refine=False),
        upsample_depth(model, lr, scene["rgb"], refine=False),
    )
