"""Hot-swap + PAC-CRF from third-party checkpoints: torchvision FCN-ResNet50 and an smp U-Net.

For each family, a checkpoint is written in its library's own layout (torchvision's
``torch.save(net.state_dict())``; smp's the same), then loaded the way a user loads one
(``create_model(name, weights=FILE)``), and compared:

    checkpoint         the checkpoint as loaded, no further training
    fine-tuned         the unswapped model fine-tuned from it for the fine-tuning steps
    pac + pac-crf      its recipe's convolutions hot-swapped to PAC and a PAC-CRF appended,
                       fine-tuned jointly from the same checkpoint for the same steps

plus how far the hot-swap moves the checkpoint's logits on a real photograph (scikit-image's
astronaut; the recipe is chosen so that it starts where the checkpoint is).

Nothing can be downloaded here, so each checkpoint is the family's network trained from
scratch on the synthetic scenes for ``--pretrain-steps`` (a stand-in for COCO/VOC weights);
with a real checkpoint, pass ``--checkpoint name=FILE`` and ``--num-classes`` to fine-tune
to (another class count re-initialises the head). Evaluation is on held-out scenes of a seed
stream no run trains or selects on.

    python scripts/exp_pretrained.py --out runs/exp_pretrained [--markdown table.md]
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
import numpy as np
import torch

from densepac.engine.config import epochs_for_steps
from densepac.engine.report import markdown_table
from densepac.engine.tasks import SegmentationTask
from densepac.engine.trainer import evaluate
from densepac.models import create_model
from densepac.segmentation.datasets import make_seg_dataset
from densepac.segmentation.recipe import SegFinetuneConfig, best_seg_model, finetune_segmentation

#: Registry name -> architecture arguments of each family compared.
FAMILIES = {"fcn_resnet50": {}, "smp_unet": {"encoder_name": "resnet18"}}


def _photo(size: int) -> torch.Tensor:
    """scikit-image's astronaut photograph, (1, 3, size, size) in [0, 1]."""
    import cv2
    from skimage import data

    rgb = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1)[None]


def _swap_shift(name: str, kwargs: dict, checkpoint: Path, num_classes: int, image: torch.Tensor) -> float:
    """Largest logit change the recipe's hot-swap makes, relative to the logits' range."""
    plain = create_model(name, weights=checkpoint, num_classes=num_classes, **kwargs).eval()
    swapped = create_model(name, weights=checkpoint, num_classes=num_classes, hot_swap=True, **kwargs).eval()
    with torch.inference_mode():
        a, b = plain(image), swapped(image)
    return float((a - b).abs().max() / (a.max() - a.min()))


def _third_party_checkpoint(cfg: SegFinetuneConfig, path: Path) -> Path:
    """The best model of ``cfg``'s run saved in its library's layout (the wrapped network's state dict)."""
    if not path.is_file():
        torch.save(best_seg_model(cfg).net.state_dict(), path)
    return path


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/exp_pretrained"), show_default=True)
@click.option("--families", default=",".join(FAMILIES), show_default=True, help="Comma-separated registry names.")
@click.option(
    "--checkpoint", "checkpoints", multiple=True, help="name=FILE: a real checkpoint instead of the stand-in."
)
@click.option("--num-classes", default=6, show_default=True, help="Classes of the synthetic scenes.")
@click.option("--pretrain-steps", default=400, show_default=True, help="Steps of each stand-in checkpoint.")
@click.option("--finetune-steps", default=200, show_default=True, help="Steps of each fine-tuning.")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--crop", default=96, show_default=True)
@click.option("--scene-size", default=128, show_default=True)
@click.option("--test-scenes", default=100, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--markdown", type=click.Path(path_type=Path), default=None, help="Also write the table here.")
def main(
    out: Path,
    families: str,
    checkpoints: tuple[str, ...],
    num_classes: int,
    pretrain_steps: int,
    finetune_steps: int,
    batch_size: int,
    crop: int,
    scene_size: int,
    test_scenes: int,
    seed: int,
    device: str,
    markdown: Path | None,
) -> None:
    given = dict(c.split("=", 1) for c in checkpoints)
    out.mkdir(parents=True, exist_ok=True)
    test = make_seg_dataset(
        f"synthetic:{seed + 7919}", "test", num_classes=num_classes, size=scene_size, num_scenes=test_scenes
    )
    task = SegmentationTask(num_classes)
    image = _photo(scene_size)
    rows = []
    for name in families.split(","):
        kwargs = FAMILIES.get(name, {})
        base = SegFinetuneConfig(
            name,
            out=str(out / f"{name}_pretrain"),
            num_classes=num_classes,
            crop=crop,
            scene_size=scene_size,
            val_size=30,
            batch_size=batch_size,
            lr=1e-3,
            seed=seed,
            device=device,
            model_kwargs=kwargs,
            **epochs_for_steps(pretrain_steps, batch_size, 4),
        )
        if name in given:
            checkpoint = Path(given[name])
        else:
            click.echo(f"== {name}: stand-in checkpoint -> {base.out}", err=True)
            finetune_segmentation(base, resume=True)  # a finished run returns at once, a cut one continues
            checkpoint = _third_party_checkpoint(base, out / f"{name}_checkpoint.pth")
        shift = _swap_shift(name, kwargs, checkpoint, num_classes, image)
        tune = dict(weights=str(checkpoint), lr=1e-4, crf_lr=1e-3, **epochs_for_steps(finetune_steps, batch_size, 2))
        runs = {
            "fine-tuned": dataclasses.replace(base, out=str(out / f"{name}_tuned"), **tune),
            "pac + pac-crf": dataclasses.replace(
                base, out=str(out / f"{name}_pac_crf"), hot_swap=True, crf=True, **tune
            ),
        }
        variants = {"checkpoint": create_model(name, weights=checkpoint, num_classes=num_classes, **kwargs)}
        for label, cfg in runs.items():
            click.echo(f"== {name}: {label} -> {cfg.out}", err=True)
            finetune_segmentation(cfg, resume=True)
            variants[label] = best_seg_model(cfg)
        for label, model in variants.items():
            m = evaluate(model.to(device), task, test, device=device, seed=seed)
            rows.append(
                {
                    "family": name,
                    "model": label,
                    "swap_shift": shift if label == "pac + pac-crf" else None,
                    "miou": 100 * m["miou"],
                    "boundary_miou": 100 * m["boundary_miou"],
                    "pixel_acc": 100 * m["pixel_acc"],
                }
            )
            click.echo(json.dumps(rows[-1]), err=True)
    lines = [
        f"Synthetic segmentation, {num_classes} classes, {test_scenes} held-out {scene_size}x{scene_size} scenes; "
        f"stand-in checkpoints trained from scratch for {pretrain_steps} steps and saved in their library's layout, "
        f"each variant fine-tuned {finetune_steps} steps from it (batch {batch_size}, {crop}px crops). "
        "Swap shift: the largest logit change of the hot-swap at load time on a real photo, over the logit range.",
        "",
    ]
    lines += markdown_table(
        ["family", "model", "swap shift", "mIoU", "boundary mIoU", "pixel acc"],
        (
            [
                r["family"],
                r["model"],
                "-" if r["swap_shift"] is None else f"{r['swap_shift']:.1e}",
                f"{r['miou']:.2f}",
                f"{r['boundary_miou']:.2f}",
                f"{r['pixel_acc']:.2f}",
            ]
            for r in rows
        ),
    )
    click.echo("\n".join(lines))
    if markdown is not None:
        markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
