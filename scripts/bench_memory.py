"""Peak memory (RSS) of `densepac upsample` on a large image, tiled and untiled.

Runs the command line in a fresh subprocess per setting, on a synthetic 4000x3000 guide
with a 500x375 depth map (x8), and reads the child's peak resident set size.

    python scripts/bench_memory.py [--width 4000 --height 3000 --scale 8] [--model NAME]
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import cv2
import numpy as np

from densepac.data.synthetic import make_rgbd_scene


def _peak_child_mib() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux


@click.command()
@click.option("--width", default=4000, show_default=True)
@click.option("--height", default=3000, show_default=True)
@click.option("--scale", default=8, show_default=True)
@click.option("--model", "model_name", default=None, help="Registry model (default: what `upsample` picks).")
@click.option("--tiles", default="auto,0", show_default=True,
              help="Comma-separated --tile settings to measure (auto = the default, 0 = untiled).")
def main(width: int, height: int, scale: int, model_name: str | None, tiles: str) -> None:
    exe = Path(sys.executable).with_name("densepac")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scene = make_rgbd_scene(0, height, width)
        cv2.imwrite(str(tmp / "guide.png"), (scene["rgb"][..., ::-1] * 255).astype(np.uint8))
        np.save(tmp / "depth.npy", scene["depth"][scale // 2::scale, scale // 2::scale])
        click.echo(f"guide {width}x{height}, depth {width // scale}x{height // scale} (x{scale})")
        click.echo("| --tile | model | peak RSS (MiB) | wall (s) |\n|---|---|---|---|")
        for tile in tiles.split(","):
            cmd = [str(exe), "upsample", str(tmp / "depth.npy"), str(tmp / "guide.png"), "-o", str(tmp / "out.npy"),
                   "--overwrite", "--device", "cpu"]
            cmd += ["--model", model_name] if model_name else []
            cmd += ["--tile", tile] if tile != "auto" else []
            before = _peak_child_mib()
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            peak = _peak_child_mib()
            used = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
            if r.returncode:
                click.echo(f"| {tile} | - | failed: {used} | {wall:.1f} |")
                continue
            # RUSAGE_CHILDREN keeps the largest child so far: only a rise is this run's own.
            click.echo(f"| {tile} | {used.split(' from ')[-1].split(' ')[0]} | "
                       f"{peak:.0f}{'' if peak > before else ' (<= previous run)'} | {wall:.1f} |")


if __name__ == "__main__":
    main()
