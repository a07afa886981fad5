"""Depth maps as coloured point clouds: pinhole back-projection and binary PLY files.

Camera frame: x to the right, y down, z forward (metres), pixel ``(u, v)`` at its centre,
``X = (u - cx) * Z / fx``, ``Y = (v - cy) * Z / fy``. Missing pixels (0 or non-finite) are
dropped. PLY files are ``binary_little_endian`` with float ``x, y, z`` and uchar ``red,
green, blue`` per vertex, as MeshLab, CloudCompare and Open3D read them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from densepac.errors import InputError
from densepac.io.files import PathLike, atomic_write

PLY_EXTENSIONS: tuple[str, ...] = (".ply",)
_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])


def parse_intrinsics(text: str) -> tuple[float, float, float, float]:
    """``"fx,fy,cx,cy"`` (pixels) as four floats; focal lengths must be positive."""
    parts = str(text).split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values) or values[0] <= 0 or values[1] <= 0:
        raise InputError(f"--intrinsics {text!r}: give fx,fy,cx,cy in pixels, e.g. 525,525,319.5,239.5")
    return values  # type: ignore[return-value]


def depth_to_points(
    depth: np.ndarray, intrinsics: tuple[float, float, float, float], rgb: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(points (N, 3) float32 metres, colors (N, 3) uint8) of the valid pixels of ``depth`` (H, W).

    ``rgb`` (H, W, 3) in [0, 1] colours the points (gray without it).
    """
    fx, fy, cx, cy = intrinsics
    d = np.asarray(depth, dtype=np.float32)
    if d.ndim != 2:
        raise InputError(f"depth must be (H, W), got shape {d.shape}")
    v, u = np.nonzero(np.isfinite(d) & (d > 0))
    z = d[v, u]
    points = np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], axis=1).astype(np.float32)
    if rgb is None:
        colors = np.full((len(z), 3), 128, np.uint8)
    else:
        image = np.asarray(rgb, dtype=np.float32)
        if image.shape[:2] != d.shape or image.ndim != 3:
            raise InputError(f"rgb {image.shape} does not match depth {d.shape}")
        colors = np.clip(np.round(image[v, u, :3] * 255), 0, 255).astype(np.uint8)
    return points, colors


def write_ply(path: PathLike, points: np.ndarray, colors: np.ndarray, overwrite: bool = True) -> None:
    """Write a binary little-endian PLY point cloud (atomically)."""
    vertices = np.empty(len(points), dtype=_VERTEX)
    for i, axis in enumerate("xyz"):
        vertices[axis] = points[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        vertices[channel] = colors[:, i]
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment written by densepac\n"
        f"element vertex {len(vertices)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    with atomic_write(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(header.encode("ascii") + vertices.tobytes())


def read_ply(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(points (N, 3) float32, colors (N, 3) uint8) of a PLY file as :func:`write_ply` writes it."""
    data = Path(path).read_bytes()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0 or b"format binary_little_endian" not in data[:end]:
        raise InputError(f"{path}: not a binary little-endian PLY file")
    count = int(next(line.split()[-1] for line in data[:end].split(b"\n") if line.startswith(b"element vertex")))
    vertices = np.frombuffer(data, dtype=_VERTEX, count=count, offset=end + len(b"end_header\n"))
    points = np.stack([vertices[a] for a in "xyz"], axis=1)
    colors = np.stack([vertices[c] for c in ("red", "green", "blue")], axis=1)
    return points, colors
