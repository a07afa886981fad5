"""Frames per second on many frames: one `densepac upsample` call per frame against one call on folders.

Makes ``--frames`` procedural 640x480 RGB-D frames with x8 area-sampled depth, then times
(a) the CLI loop a user scripts by hand, one process per frame, and (b) one process given
the two folders (the model loaded once, every frame through the same pipeline). Both run
``densepac upsample`` with no flags, i.e. the default pipeline. Run on a quiet machine.

    python scripts/bench_frames.py [--frames 8]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from densepac.depth.degrade import simulate_lr
from densepac.depth.synthetic import make_rgbd_scene
from densepac.io.images import write_image


@click.command()
@click.option("--frames", default=8, show_default=True)
def main(frames: int) -> None:
    densepac = [sys.executable, "-m", "densepac.cli", "upsample"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for d in ("depth", "rgb", "loop", "folder"):
            (root / d).mkdir()
        for i in range(frames):
            scene = make_rgbd_scene(7000 + i, 480, 640)
            np.save(root / "depth" / f"f{i:03d}.npy", simulate_lr(scene["depth"], 8, "area"))
            write_image(root / "rgb" / f"f{i:03d}.png", scene["rgb"])
        t0 = time.perf_counter()
        for i in range(frames):
            name = f"f{i:03d}"
            subprocess.run(
                [
                    *densepac,
                    str(root / "depth" / f"{name}.npy"),
                    str(root / "rgb" / f"{name}.png"),
                    "-o",
                    str(root / "loop" / f"{name}.npy"),
                ],
                check=True,
                capture_output=True,
            )
        loop = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run(
            [*densepac, str(root / "depth"), str(root / "rgb"), "-o", str(root / "folder")],
            check=True,
            capture_output=True,
        )
        folder = time.perf_counter() - t0
        same = all(np.array_equal(np.load(root / "loop" / p.name), np.load(p)) for p in (root / "folder").iterdir())
    click.echo(f"{frames} frames of 640x480 at x8 (area-sampled input, default pipeline); outputs identical: {same}\n")
    click.echo("| how | seconds | frames per second |\n|---|---|---|")
    click.echo(f"| one process per frame (CLI loop) | {loop:.1f} | {frames / loop:.2f} |")
    click.echo(f"| one process on two folders | {folder:.1f} | {frames / folder:.2f} |")


if __name__ == "__main__":
    main()
