"""Time and error of graph_refine on synthetic scenes, from a bicubic start.

For each scale and sampling: the source is the scene's depth sampled that way (no noise),
the start is the registry's ``bicubic`` baseline, and the refinement uses the defaults of
:func:`densepac.ops.graph_refine`. Seconds are the median of ``--repeats`` calls after a
warm-up, on ``--threads`` CPU threads (or the GPU); RMSE is over all pixels, in cm, also
after :func:`densepac.ops.source_consistency` makes the refinement reproduce the source exactly.

    python scripts/bench_refine.py [--size 480x640] [--scales 4,8,16] [--threads 1] [--device cpu]
"""

from __future__ import annotations

from functools import partial

import click
import torch

from densepac.depth.models.baselines import Bicubic
from densepac.depth.synthetic import make_rgbd_scene
from densepac.engine.report import markdown_table, median_seconds
from densepac.ops import SAMPLINGS, graph_refine, sample_as_source, source_consistency


def rmse_cm(x: torch.Tensor, ref: torch.Tensor) -> float:
    return 100 * (x - ref).pow(2).mean().sqrt().item()


@click.command()
@click.option("--size", default="480x640", show_default=True, help="HR size HxW.")
@click.option("--scales", default="4,8,16", show_default=True, help="Upsampling factors, comma separated.")
@click.option("--samplings", default=",".join(SAMPLINGS), show_default=True, help="area and/or point.")
@click.option("--seeds", default="0", show_default=True, help="Scene seeds, comma separated (one row each).")
@click.option("--threads", default=1, show_default=True, help="CPU threads (torch.set_num_threads).")
@click.option("--device", default="cpu", type=click.Choice(["cpu", "cuda"]))
@click.option("--repeats", default=3, show_default=True)
def main(size: str, scales: str, samplings: str, seeds: str, threads: int, device: str, repeats: int) -> None:
    torch.set_num_threads(threads)
    height, width = (int(v) for v in size.lower().split("x"))
    rows = []
    for seed in (int(v) for v in seeds.split(",")):
        scene = make_rgbd_scene(seed, height, width)
        depth = torch.from_numpy(scene["depth"])[None, None].to(device)
        guide = torch.from_numpy(scene["rgb"]).permute(2, 0, 1)[None].to(device)
        for sampling in samplings.split(","):
            for s in (int(v) for v in scales.split(",")):
                lr = sample_as_source(depth, s, sampling)
                start = Bicubic()(lr, guide)
                out, iterations = graph_refine(start, lr, guide, sampling, return_iterations=True)
                seconds = median_seconds(partial(graph_refine, start, lr, guide, sampling), repeats, device)
                exact = source_consistency(out, lr, sampling)
                rows.append(
                    (
                        f"{height}x{width}",
                        str(seed),
                        sampling,
                        f"x{s}",
                        str(iterations.item()),
                        f"{seconds:.2f}",
                        f"{rmse_cm(start, depth):.2f}",
                        f"{rmse_cm(out, depth):.2f}",
                        f"{rmse_cm(exact, depth):.2f}",
                    )
                )
    click.echo(f"device: {device}, threads: {threads}, median of {repeats}; RMSE in cm")
    titles = (
        "size",
        "seed",
        "sampling",
        "scale",
        "iterations",
        "seconds",
        "RMSE bicubic",
        "RMSE refined",
        "+ source_consistency",
    )
    for line in markdown_table(titles, rows):
        click.echo(line)


if __name__ == "__main__":
    main()
