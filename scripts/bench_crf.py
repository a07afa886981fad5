"""PAC-CRF cost: time and peak memory of a segmentation forward with and without the CRF.

Each case runs in its own spawned process, so its peak resident set (``ru_maxrss``) is its
own: "model RSS" is measured after building the model and before the first forward, "peak
RSS" after the timed forwards; their difference is what inference adds. The CRF is the PAC
paper's best (5 mean-field steps, two 5x5 kernels at dilations 64 and 16 at 512 pixels).

    python scripts/bench_crf.py [--size 512] [--classes 21] [--repeats 3]
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import sys

import click

PAPER_CRF = {"kernels": [[5, 64], [5, 16]], "dilation_reference": 512, "num_steps": 5}
CASES = {
    "fcn8s_vgg16": {},
    "fcn8s_vgg16 + pac-crf": {"crf": True, "crf_kwargs": PAPER_CRF},
    "pac_fcn8s_vgg16": {},
    "pac_fcn8s_vgg16 + pac-crf": {"crf": True, "crf_kwargs": PAPER_CRF},
}


def _rss_mib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _run_case(name: str, size: int, classes: int, repeats: int, threads: int, queue: mp.Queue) -> None:
    import torch

    from densepac.engine.report import median_seconds
    from densepac.models import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(name.split(" + ")[0], num_classes=classes, **CASES[name]).eval()
    image = torch.rand(1, 3, size, size)
    model_rss = _rss_mib()
    with torch.inference_mode():
        assert model(image).shape == (1, classes, size, size)
        seconds = median_seconds(lambda: model(image), repeats)
    queue.put({"model": name, "model_rss": model_rss, "peak_rss": _rss_mib(), "seconds": seconds})


@click.command()
@click.option("--size", default=512, show_default=True)
@click.option("--classes", default=21, show_default=True)
@click.option("--repeats", default=3, show_default=True)
@click.option("--threads", default=2, show_default=True)
def main(size: int, classes: int, repeats: int, threads: int) -> None:
    ctx = mp.get_context("spawn")
    rows = []
    for name in CASES:
        queue = ctx.Queue()
        proc = ctx.Process(target=_run_case, args=(name, size, classes, repeats, threads, queue))
        proc.start()
        rows.append(queue.get())
        proc.join()
    click.echo(
        f"Forward of one {size}x{size} image, {classes} classes, CPU, {threads} threads "
        f"(median of {repeats}); RSS per case in its own process.\n"
    )
    click.echo("| model | s / image | model RSS (MiB) | peak RSS (MiB) | forward adds (MiB) |")
    click.echo("|---|---|---|---|---|")
    for r in rows:
        click.echo(
            f"| {r['model']} | {r['seconds']:.2f} | {r['model_rss']:.0f} | {r['peak_rss']:.0f} | "
            f"{r['peak_rss'] - r['model_rss']:.0f} |"
        )


if __name__ == "__main__":
    main()
