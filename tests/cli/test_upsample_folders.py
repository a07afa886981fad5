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
from densepac.io.images import read_image, write_image
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
    assert f"skipped {depth_dir / 'c.npy'}:" in r.stderr
    assert f"skipped {depth_dir / 'lonely.npy'}: no guide" in r.stderr
    assert r.stderr.strip().splitlines()[-1] == "Error: 2 pair(s) skipped (listed above); the others were written"
    first = read_depth(out / "a.npy")
    assert first.shape == (32, 48)
    # Again without --overwrite: what was written stays, and is reported, not replaced.
    r = CliRunner().invoke(main, ["upsample", str(depth_dir), str(guide_dir), "-o", str(out), "--model", "bicubic"])
    assert r.exit_code == 2 and f"skipped {depth_dir / 'a.npy'}:" in r.stderr and "already exists" in r.stderr
    np.testing.assert_array_equal(read_depth(out / "a.npy"), first)


def test_list_file_of_pairs(tmp_path):
    depth_dir, guide_dir = _folders(tmp_path)
    spaced = tmp_path / "with space"
    spaced.mkdir()
    (guide_dir / "b.png").rename(spaced / "b b.png")
    (depth_dir / "a.npy").rename(tmp_path / "a.npy")
    other = tmp_path / "other"
    other.mkdir()
    np.save(other / "a.npy", np.load(tmp_path / "a.npy"))
    listing = tmp_path / "pairs.txt"
    listing.write_text(
        "# depth guide\n"
        "a.npy rgb/a.png\n"
        "\n"
        f"{depth_dir / 'b.npy'} 'with space/b b.png'  # absolute and quoted\n"
        "depth/c.npy rgb/c.png\n"
        "other/a.npy rgb/a.png\n"
    )
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["upsample", str(listing), "-o", str(out), "--model", "bicubic"])
    assert r.exit_code == 2, r.output
    assert sorted(p.name for p in out.iterdir()) == ["a.npy", "b.npy"]
    assert f"skipped {depth_dir / 'c.npy'}:" in r.stderr
    assert f"skipped {other / 'a.npy'}: a.npy was written for an earlier pair" in r.stderr
    model = create_model("bicubic")
    for name, guide in (("a", guide_dir / "a.png"), ("b", spaced / "b b.png")):
        depth_file = tmp_path / "a.npy" if name == "a" else depth_dir / "b.npy"
        expected = upsample_depth(model, read_depth(depth_file), read_image(guide), refine=True)
        np.testing.assert_allclose(read_depth(out / f"{name}.npy"), expected, rtol=1e-6)


def test_bad_list_files_are_named_with_the_line(tmp_path):
    listing = tmp_path / "pairs.txt"
    for text, message in (
        ("a.npy b.png\nonly_one.npy\n", "pairs.txt:2: expected two paths (DEPTH GUIDE), found 1"),
        ("'a.npy b.png\n", "pairs.txt:1: No closing quotation"),
        ("# nothing\n", "lists no pair"),
    ):
        listing.write_text(text)
        r = CliRunner().invoke(main, ["upsample", str(listing), "-o", str(tmp_path / "out")])
        assert r.exit_code == 2 and message in r.stderr, r.output
    r = CliRunner().invoke(main, ["upsample", str(tmp_path), "-o", str(tmp_path / "out")])
    assert r.exit_code == 2 and "give the guide folder too" in r.stderr


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
