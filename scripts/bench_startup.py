"""Start-up cost of the command line: each command against ``python -c "import torch"``.

Runs every command ``--repeats`` times in a fresh process and prints the median wall time
and its difference to importing torch (what any torch program pays). Run on a quiet machine.

    python scripts/bench_startup.py [--repeats 5]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "datasets" / "samples"


def seconds(cmd: list[str], repeats: int) -> float:
    """Median wall time of ``cmd`` over ``repeats`` fresh runs (one untimed warm-up for the disk cache)."""
    subprocess.run(cmd, capture_output=True, check=True)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@click.command()
@click.option("--repeats", default=5, show_default=True)
def main(repeats: int) -> None:
    densepac = [sys.executable, "-m", "densepac.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "out.png")
        commands = {
            'python -c "import torch"': [sys.executable, "-c", "import torch"],
            "densepac --help": [*densepac, "--help"],
            "densepac models": [*densepac, "models"],
            "densepac upsample --model bicubic (shipped sample)": [
                *densepac,
                "upsample",
                str(SAMPLE / "scene_depth_lr.png"),
                str(SAMPLE / "scene_rgb.png"),
                "-o",
                out,
                "--model",
                "bicubic",
                "--overwrite",
            ],
            "densepac upsample (default pipeline, shipped sample)": [
                *densepac,
                "upsample",
                str(SAMPLE / "scene_depth_lr.png"),
                str(SAMPLE / "scene_rgb.png"),
                "-o",
                out,
                "--overwrite",
            ],
        }
        times = {name: seconds(cmd, repeats) for name, cmd in commands.items()}
    base = times['python -c "import torch"']
    click.echo(f"median of {repeats} fresh processes\n")
    click.echo("| command | seconds | more than import torch |\n|---|---|---|")
    for name, sec in times.items():
        click.echo(f"| {name} | {sec:.2f} | {sec - base:+.2f} |")


if __name__ == "__main__":
    main()
