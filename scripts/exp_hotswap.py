"""Hot-swapping ablation on synthetic segmentation scenes (the PAC paper's Table 4, our data).

Trains an FCN-8s briefly, then fine-tunes four ways from that same FCN for the same number
of steps and compares them on held-out scenes (a seed stream no run trains or selects on):

    fcn                FCN-8s after its first training
    fcn + guided filter  its class probabilities smoothed by a guided filter (the classic baseline)
    fcn (continued)    the same FCN trained for the fine-tuning steps too: the fair baseline
    fcn + pac-crf      PAC-CRF trained on top, FCN frozen (the paper's stage 1)
    pac-fcn            conv3_3 / conv4_3 / conv5_3 hot-swapped to PAC guided by conv2_2, fine-tuned
    pac-fcn + pac-crf  PAC-CRF on top of that PAC-FCN, PAC-FCN frozen

The paper reports 65.51 / 68.90 / 67.44 / 69.87 mIoU on VOC val for FCN / +CRF / PAC-FCN /
PAC-FCN+CRF from ImageNet-pretrained VGG16. Here nothing can be downloaded, so the VGG16 is
trained from scratch on synthetic scenes, thinner (``--width``) so a CPU can do it.

    python scripts/exp_hotswap.py --out runs/exp_hotswap [--markdown table.md]
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
import torch

from densepac.engine.config import epochs_for_steps
from densepac.engine.report import markdown_table, median_seconds
from densepac.engine.tasks import SegmentationTask
from densepac.engine.trainer import evaluate
from densepac.ops import GuidedRefined
from densepac.segmentation.datasets import make_seg_dataset
from densepac.segmentation.recipe import SegFinetuneConfig, best_seg_model, finetune_segmentation

#: The paper's best PAC-CRF: two 5x5 kernels at dilations 64 and 16 for 512-pixel images,
#: rescaled to the image size.
PAPER_CRF = {"kernels": [[5, 64], [5, 16]], "dilation_reference": 512, "num_steps": 5}


def _time_per_image(model: torch.nn.Module, size: int, device: str) -> float:
    """Median seconds of one forward on a random ``size`` x ``size`` image."""
    image = torch.rand(1, 3, size, size, device=device)
    with torch.inference_mode():
        return median_seconds(lambda: model.eval()(image), device=device)


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/exp_hotswap"), show_default=True)
@click.option("--num-classes", default=6, show_default=True, help="Background + 5 object classes.")
@click.option("--width", default=0.25, show_default=True, help="Fraction of VGG16's channel widths.")
@click.option("--fcn-steps", default=1500, show_default=True, help="Steps of the first FCN training.")
@click.option("--finetune-steps", default=500, show_default=True, help="Steps of each fine-tuning.")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--crop", default=96, show_default=True)
@click.option("--scene-size", default=128, show_default=True)
@click.option("--test-scenes", default=100, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--markdown", type=click.Path(path_type=Path), default=None, help="Also write the table here.")
def main(
    out: Path,
    num_classes: int,
    width: float,
    fcn_steps: int,
    finetune_steps: int,
    batch_size: int,
    crop: int,
    scene_size: int,
    test_scenes: int,
    seed: int,
    device: str,
    markdown: Path | None,
) -> None:
    widths = [max(4, round(w * width)) for w in (64, 128, 256, 512, 512)]
    model_kwargs = {"widths": widths, "fc_channels": max(16, round(4096 * width / 4))}
    base = SegFinetuneConfig(
        "fcn8s_vgg16",
        out=str(out / "fcn"),
        num_classes=num_classes,
        crop=crop,
        scene_size=scene_size,
        val_size=30,
        batch_size=batch_size,
        lr=1e-3,
        crf_lr=1e-2,
        seed=seed,
        device=device,
        model_kwargs=model_kwargs,
        **epochs_for_steps(fcn_steps, batch_size, 5),
    )
    fcn = base.out
    tune = epochs_for_steps(finetune_steps, batch_size, 2)
    runs = {
        "fcn": base,
        "fcn (continued)": dataclasses.replace(base, out=str(out / "fcn_cont"), weights=fcn, lr=3e-4, **tune),
        "fcn + pac-crf": dataclasses.replace(
            base, out=str(out / "fcn_crf"), weights=fcn, crf=True, stage="crf_only", crf_kwargs=PAPER_CRF, **tune
        ),
        "pac-fcn": dataclasses.replace(base, out=str(out / "pac_fcn"), weights=fcn, hot_swap=True, lr=3e-4, **tune),
    }
    runs["pac-fcn + pac-crf"] = dataclasses.replace(
        runs["pac-fcn"],
        out=str(out / "pac_fcn_crf"),
        weights=runs["pac-fcn"].out,
        crf=True,
        stage="crf_only",
        crf_kwargs=PAPER_CRF,
        lr=1e-3,
    )
    # A seed stream disjoint from training (and from the validation set that picks checkpoints).
    test = make_seg_dataset(
        f"synthetic:{seed + 7919}", "test", num_classes=num_classes, size=scene_size, num_scenes=test_scenes
    )
    task = SegmentationTask(num_classes)
    rows = []

    def add_row(name: str, model: torch.nn.Module) -> None:
        m = evaluate(model, task, test, device=device, seed=seed)
        rows.append(
            {
                "model": name,
                "miou": 100 * m["miou"],
                "boundary_miou": 100 * m["boundary_miou"],
                "pixel_acc": 100 * m["pixel_acc"],
                "params": sum(p.numel() for p in model.parameters()),
                "sec_per_image": _time_per_image(model, scene_size, device),
            }
        )
        click.echo(json.dumps(rows[-1]), err=True)

    for name, cfg in runs.items():
        click.echo(f"== training {name} -> {cfg.out}", err=True)
        finetune_segmentation(cfg, resume=True)  # a finished run returns at once, a cut one continues
        model = best_seg_model(cfg)
        add_row(name, model.to(device))
        if name == "fcn":
            add_row("fcn + guided filter", GuidedRefined(model))
    lines = [
        f"Synthetic segmentation, {num_classes} classes, {test_scenes} held-out {scene_size}x{scene_size} "
        f"scenes; FCN-8s at {width:g}x VGG16 widths trained from scratch for {fcn_steps} steps, each "
        f"variant fine-tuned {finetune_steps} steps from it (batch {batch_size}, {crop}px crops); "
        f"time: one forward on {device}, {torch.get_num_threads()} threads.",
        "",
    ]
    lines += markdown_table(
        ["model", "mIoU", "boundary mIoU", "pixel acc", "params", "s / image"],
        (
            [
                r["model"],
                f"{r['miou']:.2f}",
                f"{r['boundary_miou']:.2f}",
                f"{r['pixel_acc']:.2f}",
                f"{r['params']:,}",
                f"{r['sec_per_image']:.3f}",
            ]
            for r in rows
        ),
    )
    click.echo("\n".join(lines))
    if markdown is not None:
        markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
