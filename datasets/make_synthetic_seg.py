"""Write procedural segmentation scenes in the PASCAL VOC 2012 layout read by ``VOCSegmentation``.

Examples::

    # regenerate the segmentation sample of datasets/samples/ (seg_scene.png, seg_labels.png)
    python datasets/make_synthetic_seg.py datasets/samples --sample --overwrite

    # 200 scenes of 128x128 with 5 classes, the last 20 % listed in val.txt
    python datasets/make_synthetic_seg.py data/synthetic_seg --num 200 --val 0.2 --seed 0

    # read them back
    from densepac.segmentation.datasets import VOCSegmentation
    train = VOCSegmentation("data/synthetic_seg", "train", num_classes=5)

Layout (VOC folder names, so every VOC reader and recipe works unchanged)::

    OUT/JPEGImages/<id>.png             RGB images, PNG despite the folder name: JPEG artefacts
                                        would blur exactly the thin structures and fine
                                        boundaries the scenes are made of
    OUT/SegmentationClass/<id>.png      palette PNGs (VOC colors), pixel value = class id
    OUT/ImageSets/Segmentation/{train,val,trainval}.txt

Scene ``i`` is ``make_seg_scene(scene_seed(seed, i), H, W, num_classes)``, the same scene that
``SyntheticSegmentation(num, seed=seed, size=(H, W), num_classes=...)`` yields as item ``i``.
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
    if not match or min(int(match.group(1)), int(match.group(2))) < 16:
        raise click.BadParameter(f"{value!r} is not HEIGHTxWIDTH with both >= 16, e.g. 128x128", ctx=ctx, param=param)
    return int(match.group(1)), int(match.group(2))


def split_counts(num: int, val: float) -> tuple[int, int]:
    """(train, val) scene counts: ``val`` is a fraction in [0, 1) or a count >= 1."""
    from densepac.errors import InputError

    if val >= 1 and val != int(val):
        raise InputError(f"--val {val}: give a fraction below 1 or a whole number of scenes")
    n_val = int(val) if val >= 1 else int(round(num * val))
    if n_val >= num:
        raise InputError(f"--val {val} leaves no training scenes out of --num {num}; lower --val or raise --num")
    return num - n_val, n_val


def write_voc_scenes(
    out_dir: Path,
    num: int,
    val: float,
    seed: int,
    size: tuple[int, int],
    num_classes: int,
    overwrite: bool,
    progress: bool = True,
) -> tuple[int, int]:
    """Write ``num`` scenes in the VOC layout; the last ones form the val split. Returns (train, val) counts."""
    from tqdm import tqdm

    from densepac.data.procedural import scene_seed
    from densepac.errors import InputError
    from densepac.io.files import atomic_write
    from densepac.io.images import write_image, write_label
    from densepac.segmentation.synthetic import make_seg_scene

    n_train, n_val = split_counts(num, val)
    # Fail on bad scene arguments before any file is written.
    make_seg_scene(0, *size, num_classes=num_classes)
    images, labels = out_dir / "JPEGImages", out_dir / "SegmentationClass"
    lists = out_dir / "ImageSets" / "Segmentation"
    try:
        for folder in (images, labels, lists):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {out_dir}: {exc.strerror}; choose a writable output folder") from None
    width = max(6, len(str(num - 1)))
    ids = [f"{i:0{width}d}" for i in range(num)]
    # disable=None: the bar switches itself off when stderr is not a terminal.
    for i in tqdm(range(num), desc="scenes", unit="scene", disable=None if progress else True):
        scene = make_seg_scene(scene_seed(seed, i), *size, num_classes=num_classes)
        write_image(images / f"{ids[i]}.png", scene["image"], overwrite=overwrite)
        write_label(labels / f"{ids[i]}.png", scene["label"], overwrite=overwrite)
    for name, chosen in (("train", ids[:n_train]), ("val", ids[n_train:]), ("trainval", ids)):
        with atomic_write(lists / f"{name}.txt", overwrite=overwrite) as tmp:
            tmp.write_text("".join(f"{i}\n" for i in chosen))
    return n_train, n_val


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--num", default=200, show_default=True, type=click.IntRange(min=2), help="Number of scenes.")
@click.option(
    "--val",
    default=0.2,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Validation share: a fraction below 1, or a number of scenes.",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Base seed.")
@click.option("--size", default="128x128", show_default=True, callback=_parse_size, help="HEIGHTxWIDTH in pixels.")
@click.option(
    "--num-classes",
    default=5,
    show_default=True,
    type=click.IntRange(2, 255),
    help="Classes including the background 0.",
)
@click.option("--overwrite", is_flag=True, help="Replace existing files.")
@click.option("--sample", is_flag=True, help="Write only the segmentation sample (seg_scene.png, seg_labels.png).")
def main(
    out_dir: Path,
    num: int,
    val: float,
    seed: int,
    size: tuple[int, int],
    num_classes: int,
    overwrite: bool,
    sample: bool,
) -> None:
    """Write synthetic segmentation scenes to OUT_DIR in the PASCAL VOC layout (PNG images)."""
    from densepac.errors import InputError

    if sample:
        from densepac.io.images import write_image, write_label
        from densepac.segmentation.synthetic import make_seg_demo_sample

        scene = make_seg_demo_sample()
        try:
            write_image(out_dir / "seg_scene.png", scene["image"], overwrite=overwrite)
            write_label(out_dir / "seg_labels.png", scene["label"], overwrite=overwrite)
        except InputError as exc:
            raise _BadInput(str(exc)) from None
        click.echo(f"wrote {out_dir / 'seg_scene.png'} and {out_dir / 'seg_labels.png'}", err=True)
        return
    try:
        n_train, n_val = write_voc_scenes(out_dir, num, val, seed, size, num_classes, overwrite)
    except InputError as exc:
        raise _BadInput(str(exc)) from None
    click.echo(f"wrote {n_train} train + {n_val} val scenes ({num_classes} classes) to {out_dir}", err=True)


if __name__ == "__main__":
    main()
