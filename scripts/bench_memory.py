"""Peak memory (RSS) of `densepac upsample` and `densepac segment` on large images, under budgets and untiled.

Cases (each a fresh `densepac` process on synthetic inputs):

* depth: a 4000x3000 guide with a 500x375 depth map (x8), the default upsampling model;
* segmentation: a 2048x2048 image, a U-Net (smp, ResNet-18 encoder, random weights: memory
  and time do not depend on the values) refined by a PAC-CRF (`--crf`: 5 mean-field steps,
  one 5x5 kernel whose dilation scales with the image, `dilation_reference` 512, so 4 here).
  `--seg-model fcn8s_vgg16` runs FCN-8s instead (537 MB of weights);
* shipped: `densepac segment IMAGE` with no model flags, i.e. the shipped default weights
  (hot-swapped FCN-8s + PAC-CRF, 21 classes), on a `--shipped-size` square image.

Each run is one child process; its peak resident set size comes from `os.wait4`, the
per-child form of `getrusage(RUSAGE_CHILDREN).ru_maxrss`, so runs do not see each other's
peaks. Linux counts the parent's peak at the child's `exec` in it too, so this process stays
small: inputs are made in a separate process. The tile column is the plan the command
logged for `--max-memory`, or the fixed setting.

    python scripts/bench_memory.py [--cases depth,segmentation,shipped] [--depth-budgets untiled,1.5GiB,2GiB]
                                   [--seg-budgets untiled,2GiB] [--shipped-budgets untiled,smallest]
"""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

# The `densepac` command, with INFO logging so that the memory plan is printed to stderr.
CLI = (
    "import logging, sys; logging.basicConfig(level=logging.INFO, format='%(message)s'); "
    "from densepac.cli import main; sys.argv[0] = 'densepac'; main()"
)
SUGGESTED = re.compile(r"give at least (\d+(?:\.\d+)?) MiB")
PLAN = re.compile(r"memory budget [^:]+: (?:the (whole) .* fits|tiles of (\S+) (.*?), (\d+) tiles)")


def run_cli(args: list[str], tmp: Path) -> tuple[int, float, float, str]:
    """(exit code, peak RSS MiB, wall seconds, stderr) of one `densepac` run in a child process."""
    err_path = tmp / "stderr.txt"
    with open(err_path, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", CLI, *args], stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, not by Popen
    return proc.returncode, usage.ru_maxrss / 1024, wall, err_path.read_text()  # ru_maxrss: KiB on Linux


def tile_of(stderr: str, fixed: str) -> str:
    """The plans the command logged, in order (a PAC-CRF model plans its network, then its CRF)."""
    plans = [
        "whole image" if m.group(1) else f"{m.group(2)} {m.group(3).split(' (')[0]} ({m.group(4)} tiles)"
        for m in PLAN.finditer(stderr)
    ]
    return " then ".join(plans) or fixed


def depth_inputs(tmp: Path, width: int, height: int, scale: int) -> list[str]:
    import cv2
    import numpy as np

    from densepac.depth.synthetic import make_rgbd_scene

    scene = make_rgbd_scene(0, height, width)
    cv2.imwrite(str(tmp / "guide.png"), (scene["rgb"][..., ::-1] * 255).astype(np.uint8))
    np.save(tmp / "depth.npy", scene["depth"][scale // 2 :: scale, scale // 2 :: scale])
    return [
        "upsample",
        str(tmp / "depth.npy"),
        str(tmp / "guide.png"),
        "-o",
        str(tmp / "out.npy"),
        "--overwrite",
        "--device",
        "cpu",
    ]


def write_image(path: Path, size: int) -> Path:
    """A smooth random colour image, ``size`` x ``size``."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    cv2.imwrite(str(path), cv2.resize((rng.random((size // 32, size // 32, 3)) * 255).astype(np.uint8), (size, size)))
    return path


def shipped_inputs(tmp: Path, size: int) -> list[str]:
    image = write_image(tmp / "photo.png", size)
    return ["segment", str(image), "-o", str(tmp / "shipped"), "--overwrite", "--device", "cpu"]


def segmentation_inputs(tmp: Path, size: int, model: str) -> list[str]:
    import torch

    from densepac.models import create_model, save_weights

    image = write_image(tmp / "image.png", size)
    torch.manual_seed(0)
    weights = save_weights(create_model(model), "bench_seg", model, tmp)
    return [
        "segment",
        str(image),
        "-o",
        str(tmp / "seg"),
        "--weights",
        str(weights),
        "--crf",
        "--arg",
        'crf_kwargs={"dilation_reference": 512}',
        "--overwrite",
        "--device",
        "cpu",
    ]


def prepare(
    tmp: Path,
    cases: list[str],
    width: int,
    height: int,
    scale: int,
    seg_size: int,
    seg_model: str,
    shipped_size: int,
    budgets: list[str],
) -> tuple[dict[str, list[str]], dict[str, int | None]]:
    """Input files and command lines per case, and budgets in bytes (run in a child process)."""
    from densepac.tiling import parse_memory

    args = {}
    if "depth" in cases:
        args["depth"] = depth_inputs(tmp, width, height, scale)
    if "segmentation" in cases:
        args["segmentation"] = segmentation_inputs(tmp, seg_size, seg_model)
    if "shipped" in cases:
        args["shipped"] = shipped_inputs(tmp, shipped_size)
    return args, {b: None if b == "untiled" else parse_memory(b) for b in budgets if b != "smallest"}


def budgets_option(flag: str, default: str, untiled: str = "without a budget"):
    """A comma-separated list of --max-memory values for one case ('smallest': the one the command suggests)."""
    return click.option(
        flag,
        default=default,
        show_default=True,
        help=f"Comma-separated --max-memory values; 'untiled' runs {untiled}, 'smallest' the suggested budget.",
    )


@click.command()
@click.option("--cases", default="depth,segmentation,shipped", show_default=True)
@click.option("--width", default=4000, show_default=True, help="Depth case: guide width.")
@click.option("--height", default=3000, show_default=True, help="Depth case: guide height.")
@click.option("--scale", default=8, show_default=True, help="Depth case: upsampling factor.")
@budgets_option("--depth-budgets", "untiled,1.5GiB,2GiB", "--tile 0")
@click.option("--seg-size", default=2048, show_default=True, help="Segmentation case: square image side.")
@click.option("--seg-model", default="smp_unet", show_default=True, help="Segmentation model (+ PAC-CRF).")
@budgets_option("--seg-budgets", "untiled,2GiB")
@click.option("--shipped-size", default=1504, show_default=True, help="Shipped case: square image side.")
@budgets_option("--shipped-budgets", "untiled,smallest")
def main(
    cases: str,
    width: int,
    height: int,
    scale: int,
    depth_budgets: str,
    seg_size: int,
    seg_model: str,
    seg_budgets: str,
    shipped_size: int,
    shipped_budgets: str,
) -> None:
    wanted = cases.split(",")
    budgets = {
        "depth": depth_budgets.split(","),
        "segmentation": seg_budgets.split(","),
        "shipped": shipped_budgets.split(","),
    }
    names = {
        "depth": f"depth {width}x{height} x{scale}",
        "segmentation": f"segment {seg_size}x{seg_size} {seg_model}+crf",
        "shipped": f"segment {shipped_size}x{shipped_size} shipped pac_fcn8s_vgg16+crf",
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            args, limits = pool.apply(
                prepare,
                (tmp, wanted, width, height, scale, seg_size, seg_model, shipped_size, sum(budgets.values(), [])),
            )
        click.echo(f"peak resident memory of each `densepac` process; cpu, {os.cpu_count()} cores")
        click.echo("| case | budget | tile | peak RSS (MiB) | under budget | seconds |\n|---|---|---|---|---|---|")
        for case in names:
            for budget in budgets[case] if case in args else []:
                if budget == "smallest":  # the smallest budget the command itself suggests
                    _, _, _, err = run_cli([*args[case], "--max-memory", "1MiB"], tmp)
                    m = SUGGESTED.search(err)
                    if m is None:
                        click.echo(f"| {names[case]} | smallest | no suggestion: {err.strip()[-200:]} | - | - | - |")
                        continue
                    budget = f"{m.group(1)}MiB"
                    limits[budget] = float(m.group(1)) * 2**20
                untiled = ["--tile", "0"] if case == "depth" else []
                extra = untiled if budget == "untiled" else ["--max-memory", budget]
                code, peak, wall, err = run_cli(args[case] + extra, tmp)
                if code:
                    lines = err.strip().splitlines()
                    click.echo(
                        f"| {names[case]} | {budget} | failed: {lines[-1] if lines else code} | {peak:.0f} | - "
                        f"| {wall:.1f} |"
                    )
                    continue
                limit = limits[budget]
                under = "-" if limit is None else ("yes" if peak * 2**20 <= limit else "no")
                tile = tile_of(err, "none (--tile 0)" if case == "depth" else "none (whole image)")
                click.echo(f"| {names[case]} | {budget} | {tile} | {peak:.0f} | {under} | {wall:.1f} |")


if __name__ == "__main__":
    main()
