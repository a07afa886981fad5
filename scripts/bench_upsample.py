"""Depth upsampling table: RMSE at x4/x8/x16 on held-out synthetic scenes, and CPU speed.

Every shipped learned model is compared with the bicubic, guided filter, joint bilateral
and training-free graph (graph_sr) baselines on the same scenes (seed stream never used in
training), point-sampled low-resolution input with 2 % holes. Each model runs alone (no
source consistency, no extra refinement); models with a self-ensemble also run with one
forward. The time column is one forward on a 640x480 guide (median of 3).
``--classic`` uses the scenes of the depth issue's targets (before rods, cylinders, depth
scaling and photographs were added to the generator).

    python scripts/bench_upsample.py [--num-scenes 50] [--device cpu] [--classic] [--markdown FILE]
"""

from __future__ import annotations

from pathlib import Path

import click
import torch

from densepac.depth.datasets import make_depth_dataset
from densepac.depth.evaluate import compare_depth_models
from densepac.depth.inference import FALLBACK_DEPTH_MODEL
from densepac.depth.recipe import BASELINES
from densepac.engine.report import median_seconds
from densepac.models import create_model, list_weights

#: The scenes of the depth issue's targets, before rods, cylinders, depth scaling and photographs.
CLASSIC_SCENES = {"max_rods": 0, "max_cylinders": 0, "depth_scale": (1, 1), "natural_images": None}


def time_640x480(model: torch.nn.Module, scale: int) -> float:
    """Median seconds of one forward on a 640x480 guide (random input)."""
    lr = torch.rand(1, 1, 480 // scale, 640 // scale) + 1
    rgb = torch.rand(1, 3, 480, 640)
    with torch.inference_mode():
        return median_seconds(lambda: model.eval()(lr, rgb))


@click.command()
@click.option("--num-scenes", default=50, show_default=True)
@click.option("--scales", default="4,8,16", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option(
    "--classic",
    is_flag=True,
    help="The depth issue's test scenes: no rods or cylinders, no depth scaling, no photographs.",
)
@click.option("--markdown", type=click.Path(path_type=Path), default=None, help="Also write the tables here.")
def main(num_scenes: int, scales: str, device: str, classic: bool, markdown: Path | None) -> None:
    torch.manual_seed(0)
    shipped = list_weights()
    scene = CLASSIC_SCENES if classic else None
    lines = [
        f"Held-out synthetic scenes ({'classic: planes, boxes, spheres' if classic else 'the training domain'}): "
        f"{num_scenes} at 240x320, point-sampled LR with 2% holes; "
        f"time: forward only on {device} with {torch.get_num_threads()} threads.",
        "",
    ]
    lines += [
        "| scale | model | RMSE (cm) | MAE (cm) | RMSE / bicubic | s / MP | 640x480 (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for scale in (int(s) for s in scales.split(",")):
        learned = [n for n in shipped if n.endswith(f"_x{scale}")]
        classical = [*BASELINES, FALLBACK_DEPTH_MODEL]
        models = {b: create_model(b) for b in classical} | {n: create_model(n, pretrained=True) for n in learned}
        # What the self-ensemble buys: the same weights, one forward.
        models |= {
            f"{n} (one forward)": create_model(n, pretrained=True, self_ensemble=1)
            for n in learned
            if getattr(models[n], "self_ensemble", 1) > 1
        }
        data = make_depth_dataset("synthetic", "test", scale, num_scenes=num_scenes, holes=0.02, scene_options=scene)
        rows = compare_depth_models(models, data, device=device)
        bicubic = next(r["rmse_cm"] for r in rows if r["model"] == "bicubic")
        for r in rows:
            t = time_640x480(models[r["model"]], scale) if device == "cpu" else float("nan")
            lines.append(
                f"| x{scale} | {r['model']} | {r['rmse_cm']:.2f} | {r['mae_cm']:.2f} | "
                f"{r['rmse_cm'] / bicubic:.2f} | {r['sec_per_mp']:.3f} | {t:.2f} |"
            )
        click.echo("\n".join(lines[-len(rows) :]), err=True)
    text = "\n".join(lines) + "\n"
    click.echo(text)
    if markdown is not None:
        markdown.write_text(text)


if __name__ == "__main__":
    main()
