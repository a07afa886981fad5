"""Depth -> coloured point cloud -> binary PLY -> back."""

import numpy as np
import pytest
from click.testing import CliRunner

from densepac.cli import main
from densepac.errors import InputError
from densepac.io.images import write_image
from densepac.io.pointcloud import depth_to_points, parse_intrinsics, read_ply, write_ply


def test_a_known_point_and_dropped_holes(tmp_path):
    depth = np.full((4, 6), 2.0, np.float32)
    depth[1, 2] = 0  # missing: no point
    depth[3, 5] = 4.0
    rgb = np.zeros((4, 6, 3), np.float32)
    rgb[3, 5] = [1.0, 0.5, 0.0]
    points, colors = depth_to_points(depth, (2.0, 4.0, 1.0, 1.5), rgb)
    assert len(points) == 23
    # Pixel (u=5, v=3) at 4 m: X = (5 - 1) * 4 / 2 = 8, Y = (3 - 1.5) * 4 / 4 = 1.5.
    write_ply(tmp_path / "c.ply", points, colors)
    back, back_colors = read_ply(tmp_path / "c.ply")
    i = int(np.argmax(back[:, 2]))
    np.testing.assert_allclose(back[i], [8.0, 1.5, 4.0])
    assert back_colors[i].tolist() == [255, 128, 0]
    np.testing.assert_array_equal(back, points)


def test_intrinsics_text():
    assert parse_intrinsics("525,525,319.5,239.5") == (525.0, 525.0, 319.5, 239.5)
    for bad in ("525,525,319.5", "a,b,c,d", "0,525,1,1"):
        with pytest.raises(InputError, match="fx,fy,cx,cy"):
            parse_intrinsics(bad)


def test_upsample_writes_a_point_cloud(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "d.npy", (rng.random((8, 12)) + 1).astype(np.float32))
    write_image(tmp_path / "g.png", rng.random((32, 48, 3)))
    args = [
        "upsample",
        str(tmp_path / "d.npy"),
        str(tmp_path / "g.png"),
        "-o",
        str(tmp_path / "o.npy"),
        "--model",
        "bicubic",
        "--pointcloud",
        str(tmp_path / "o.ply"),
    ]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "--intrinsics" in r.stderr and not (tmp_path / "o.npy").exists()
    r = CliRunner().invoke(main, [*args, "--intrinsics", "40,40,23.5,15.5"])
    assert r.exit_code == 0, r.output
    points, _ = read_ply(tmp_path / "o.ply")
    assert points.shape == (32 * 48, 3) and (points[:, 2] > 0).all()
