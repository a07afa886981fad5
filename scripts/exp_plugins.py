"""Plug-in table: DLA-Up, PAC DLA-Up, STN, Shape Adaptor and ADL on synthetic segmentation scenes.

Every row is trained from scratch with the same budget (steps, batch, learning rate, seed)
on the same scenes and evaluated on held-out scenes from a seed stream no run trains on:

    fcn8s_vgg16                  FCN-8s (VGG16 at --vgg-width of its channel widths)
    fcn8s_vgg16 + guided filter  its class probabilities smoothed by a guided filter (the baseline)
    dla_up                       DLA-Up decoder on timm's dla34
    pac_dla_up                   the same with PAC upsampling in the aggregation nodes
    dla_up + ADL                 ADL after the encoder's two deepest stages
    dla_up (rot/scale)           trained and tested on randomly rotated / scaled scenes
    dla_up + STN (rot/scale)     the same with an affine spatial transformer in front
    fcn8s resnet18               FCN-8s-style head on a plain ResNet-18 (fixed shapes)
    fcn8s shape-adaptor r18      the same encoder with learnable shape adaptors

    python scripts/exp_plugins.py --out runs/exp_plugins [--steps 400] [--markdown table.md]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import torch
from torch import nn

from densepac import create_model
from densepac.engine.report import markdown_table, median_seconds
from densepac.engine.tasks import SegmentationTask
from densepac.engine.trainer import Trainer, evaluate
from densepac.ops import GuidedRefined
from densepac.plugins.shape_adaptor import shape_adaptor_param_groups
from densepac.segmentation.synthetic import SyntheticSegmentation
from densepac.segmentation.transforms import SegTransform

TEST_SEED = 104_729  # far from the training seeds


def _materialise(dataset: Any) -> list[dict[str, torch.Tensor]]:
    """Items computed once, so every model sees the very same (randomly warped) test scenes."""
    return [dataset[i] for i in range(len(dataset))]


def _time_per_image(model: nn.Module, size: int) -> float:
    image = torch.rand(1, 3, size, size)
    with torch.inference_mode():
        return median_seconds(lambda: model.eval()(image))


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/exp_plugins"), show_default=True)
@click.option("--num-classes", default=6, show_default=True)
@click.option("--steps", default=400, show_default=True, help="Optimiser steps per model.")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--size", default=96, show_default=True, help="Scene side in pixels.")
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--vgg-width", default=0.25, show_default=True, help="Fraction of VGG16's widths for fcn8s_vgg16.")
@click.option("--test-scenes", default=100, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--only", default=None, help="Comma-separated row names to run (default: all).")
@click.option("--markdown", type=click.Path(path_type=Path), default=None)
def main(
    out: Path,
    num_classes: int,
    steps: int,
    batch_size: int,
    size: int,
    lr: float,
    vgg_width: float,
    test_scenes: int,
    seed: int,
    only: str | None,
    markdown: Path | None,
) -> None:
    torch.manual_seed(seed)
    k = num_classes
    vgg = {
        "widths": [max(4, round(w * vgg_width)) for w in (64, 128, 256, 512, 512)],
        "fc_channels": max(16, round(1024 * vgg_width)),
    }
    warp = dict(rotate=30.0, scale_range=(0.75, 1.25))
    rows_spec: dict[str, dict[str, Any]] = {
        "fcn8s_vgg16": dict(build=lambda: create_model("fcn8s_vgg16", num_classes=k, **vgg)),
        "fcn8s_vgg16 + guided filter": dict(refine="fcn8s_vgg16"),
        "dla_up": dict(build=lambda: create_model("dla_up", num_classes=k)),
        "pac_dla_up": dict(build=lambda: create_model("pac_dla_up", num_classes=k)),
        "dla_up + ADL": dict(build=lambda: create_model("dla_up", num_classes=k, adl=True)),
        "dla_up (rot/scale)": dict(build=lambda: create_model("dla_up", num_classes=k), warp=True),
        "dla_up + STN (rot/scale)": dict(build=lambda: create_model("dla_up", num_classes=k, stn="affine"), warp=True),
        "fcn8s resnet18": dict(build=lambda: create_model("fcn8s", num_classes=k, encoder_name="resnet18")),
        "fcn8s shape-adaptor r18": dict(
            build=lambda: create_model(
                "fcn8s", num_classes=k, encoder_name="shape_adaptor_resnet18", encoder_kwargs={"input_size": size}
            ),
            alpha_lr=1e-2,
        ),
    }
    wanted = set(only.split(",")) if only else set(rows_spec)
    plain_test = _materialise(SyntheticSegmentation(test_scenes, seed=TEST_SEED, size=(size, size), num_classes=k))
    warped_test = _materialise(
        SyntheticSegmentation(
            test_scenes,
            seed=TEST_SEED,
            size=(size, size),
            num_classes=k,
            transform=SegTransform(hflip=False, color_jitter=False, seed=TEST_SEED, **warp),
        )
    )
    task = SegmentationTask(k)
    trained: dict[str, nn.Module] = {}
    rows = []
    for name, spec in rows_spec.items():
        if name not in wanted and not any(s.get("refine") == name for n, s in rows_spec.items() if n in wanted):
            continue
        if "refine" in spec:
            model = GuidedRefined(trained[spec["refine"]])
        else:
            torch.manual_seed(seed)
            model = spec["build"]()
            train_tf = SegTransform(hflip=True, color_jitter=True, seed=seed, **(warp if spec.get("warp") else {}))
            train = SyntheticSegmentation(
                steps * batch_size, seed=seed, size=(size, size), num_classes=k, transform=train_tf
            )
            groups = None
            if "alpha_lr" in spec:
                groups = [g for g in shape_adaptor_param_groups(model, lr, spec["alpha_lr"]) if g["name"] == "alphas"]
            run_dir = out / name.replace(" ", "_").replace("/", "-").replace("+", "plus")
            click.echo(f"== training {name} -> {run_dir}", err=True)
            Trainer(
                model,
                task,
                train,
                None,
                out_dir=run_dir,
                epochs=1,
                batch_size=batch_size,
                lr=lr,
                optimizer="adam",
                scheduler="cosine",
                param_groups=groups,
                seed=seed,
                config={"row": name},
            ).fit(resume=True)
            trained[name] = model
        if name not in wanted:
            continue
        test = warped_test if spec.get("warp") else plain_test
        m = evaluate(model, task, test, seed=seed)
        row = {
            "model": name,
            "miou": 100 * m["miou"],
            "boundary_miou": 100 * m["boundary_miou"],
            "params": sum(p.numel() for p in model.parameters()),
            "sec_per_image": _time_per_image(model, size),
        }
        if "alpha_lr" in spec:
            row["learned_shapes"] = [s.output_size for s in model.encoder.learned_shapes((size, size))]
        rows.append(row)
        click.echo(json.dumps(row), err=True)
    lines = [
        f"Synthetic segmentation, {k} classes, {size}x{size} scenes; each model trained from scratch for "
        f"{steps} steps (batch {batch_size}, Adam lr {lr:g}, cosine), tested on {test_scenes} held-out scenes "
        f"(rot/scale rows: train and test scenes rotated by up to 30 degrees and scaled 0.75-1.25); time: one "
        f"forward on CPU, {torch.get_num_threads()} threads.",
        "",
    ]
    lines += markdown_table(
        ["model", "mIoU", "boundary mIoU", "params", "s / image"],
        (
            [
                r["model"],
                f"{r['miou']:.2f}",
                f"{r['boundary_miou']:.2f}",
                f"{r['params']:,}",
                f"{r['sec_per_image']:.3f}",
            ]
            for r in rows
        ),
    )
    shapes = [r for r in rows if "learned_shapes" in r]
    if shapes:
        lines += ["", f"Learned shape-adaptor output sizes for a {size}x{size} input: {shapes[0]['learned_shapes']}"]
    click.echo("\n".join(lines))
    if markdown is not None:
        markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
