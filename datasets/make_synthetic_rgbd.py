"""Write procedural RGB-D scenes in the folder layout read by ``densepac.depth.datasets.FolderDepth``.

Examples::

    # 100 scenes of 240x320: OUT/rgb/000000.png (8-bit), OUT/depth/000000.png (16-bit mm)
    python datasets/make_synthetic_rgbd.py data/synthetic --num 100 --seed 0 --size 240x320

    # also write simulated x8 inputs to OUT/depth_lr/
    python datasets/make_synthetic_rgbd.py data/synthetic --num 100 --lr-scale 8 --holes 0.02

    # regenerate the demo sample of datasets/samples/
    python datasets/make_synthetic_rgbd.py datasets/samples --sample --overwrite

Scene ``i`` is ``make_rgbd_scene(scene_seed(seed, i))``, the same scene that
``SyntheticDepth(num, seed=seed)`` yields as item ``i``.
"""

from __future__ import annotations

import re
from pathlib import Path

import click


class _BadInput(click.ClickException):
    """One-line error for unusable arguments or outputs; exit code 2 like ``densepac``."""

    exit_code = 2


def _parse_size(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", value)
    if not match or min(int(match.group(1)), int(match.group(2))) < 8:
        raise click.BadParameter(f"{value!r} is not HEIGHTxWIDTH with both >= 8, e.g. 240x320", ctx=ctx, param=param)
    return int(match.group(1)), int(match.group(2))


def write_sample(out_dir: Path, overwrite: bool) -> list[Path]:
    """Write the demo trio (scene_rgb.png, scene_depth_gt.png, scene_depth_lr.png) to ``out_dir``."""
    from densepac.depth.synthetic import make_demo_sample
    from densepac.io.depth import write_depth
    from densepac.io.images import write_image

    sample = make_demo_sample()
    paths = [out_dir / "scene_rgb.png", out_dir / "scene_depth_gt.png", out_dir / "scene_depth_lr.png"]
    write_image(paths[0], sample["rgb"], overwrite=overwrite)
    write_depth(paths[1], sample["depth"], depth_scale=1000.0, overwrite=overwrite)
    write_depth(paths[2], sample["depth_lr"], depth_scale=1000.0, overwrite=overwrite)
    return paths


def write_scenes(
    out_dir: Path,
    num: int,
    seed: int,
    size: tuple[int, int],
    lr_scale: int | None,
    noise: float,
    holes: float,
    overwrite: bool,
    progress: bool = True,
) -> None:
    """Write ``num`` scenes as rgb/<i>.png + depth/<i>.png (+ depth_lr/<i>.png)."""
    from tqdm import tqdm

    from densepac.data.procedural import scene_seed
    from densepac.depth.degrade import check_scale, simulate_lr
    from densepac.depth.synthetic import make_rgbd_scene
    from densepac.errors import InputError
    from densepac.io.depth import write_depth
    from densepac.io.images import write_image

    if lr_scale is not None:
        lr_scale = check_scale(lr_scale)
        if size[0] % lr_scale or size[1] % lr_scale:
            raise InputError(
                f"--size {size[0]}x{size[1]} is not divisible by --lr-scale {lr_scale}; change one of them"
            )
    subdirs = ["rgb", "depth"] + (["depth_lr"] if lr_scale else [])
    for sub in subdirs:
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(num - 1)))
    # disable=None: the bar switches itself off when stderr is not a terminal.
    for i in tqdm(range(num), desc="scenes", unit="scene", disable=None if progress else True):
        stem = f"{i:0{width}d}"
        scene = make_rgbd_scene(scene_seed(seed, i), *size)
        write_image(out_dir / "rgb" / f"{stem}.png", scene["rgb"], overwrite=overwrite)
        write_depth(out_dir / "depth" / f"{stem}.png", scene["depth"], overwrite=overwrite)
        if lr_scale:
            rng = scene_seed(seed + 1, i)
            lr = simulate_lr(scene["depth"], lr_scale, "point", noise=noise, holes=holes, rng=rng)
            write_depth(out_dir / "depth_lr" / f"{stem}.png", lr, depth_scale=1000.0, overwrite=overwrite)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--num", default=100, show_default=True, type=click.IntRange(min=1), help="Number of scenes.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Base seed.")
@click.option("--size", default="240x320", show_default=True, callback=_parse_size, help="HEIGHTxWIDTH in pixels.")
@click.option(
    "--lr-scale", type=click.IntRange(min=1), default=None, help="Also write x-scale point-sampled depth_lr/."
)
@click.option("--noise", default=0.0, show_default=True, type=click.FloatRange(min=0), help="LR noise std at 1 m (m).")
@click.option(
    "--holes",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1, max_open=True),
    help="LR hole fraction (blobs; edge shadows and glints come with it).",
)
@click.option("--sample", is_flag=True, help="Write only the demo sample (scene_rgb/depth_gt/depth_lr.png).")
@click.option("--overwrite", is_flag=True, help="Replace existing files.")
def main(
    out_dir: Path,
    num: int,
    seed: int,
    size: tuple[int, int],
    lr_scale: int | None,
    noise: float,
    holes: float,
    sample: bool,
    overwrite: bool,
) -> None:
    """Write synthetic RGB-D scenes to OUT_DIR (rgb/*.png 8-bit, depth/*.png 16-bit mm)."""
    from densepac.errors import InputError

    try:
        if sample:
            out_dir.mkdir(parents=True, exist_ok=True)
            for path in write_sample(out_dir, overwrite):
                click.echo(str(path))
            return
        write_scenes(out_dir, num, seed, size, lr_scale, noise, holes, overwrite)
    except InputError as exc:
        raise _BadInput(str(exc)) from None
    click.echo(f"wrote {num} scenes to {out_dir}", err=True)


if __name__ == "__main__":
    main()
