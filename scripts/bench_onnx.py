"""ONNX export of depth models and the shipped segmentation model: onnxruntime CPU time and parity against PyTorch.

For each model: export time (``densepac.export.export_onnx``, parity-checked on random
input), then on one procedural 640x480 RGB-D frame with x8 depth (sampled the way the
model is told) the median seconds of PyTorch (inference mode) and of onnxruntime
(CPU provider, as many threads as PyTorch), and their max relative difference. The
default depth model at x8 is ``graph_sr`` (``--sampling auto`` picks point or area per
map in Python; a graph holds one, so both are exported). The shipped segmentation model
(hot-swapped FCN-8s + PAC-CRF) runs on the frame's RGB. The ``--dynamic`` rows export one
graph for any batch and size (traced at this size, checked at two). Run on a quiet machine.

    python scripts/bench_onnx.py [--repeats 3] [--size 480x640] [--optimize] [--markdown OUT.md]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import click
import torch

from densepac.depth.degrade import simulate_lr
from densepac.depth.synthetic import make_rgbd_scene
from densepac.export import check_onnx, export_onnx
from densepac.inference import load_model_for_inference

#: (row label, registry name, model arguments, sampling of the LR input or None for segmentation, --dynamic)
CASES = [
    ("graph_sr --sampling area (default, x8)", "graph_sr", {"sampling": "area"}, "area", False),
    ("graph_sr --sampling point (default, x8)", "graph_sr", {"sampling": "point"}, "point", False),
    ("pac_learned_jbu_x8", "pac_learned_jbu_x8", {}, "area", False),
    ("pac_jointupsample_x8 (paper model)", "pac_jointupsample_x8", {}, "point", False),
    ("graph_sr --sampling area --dynamic", "graph_sr", {"sampling": "area"}, "area", True),
    ("pac_fcn8s_vgg16+crf (shipped segmentation)", "pac_fcn8s_vgg16+crf", {}, None, False),
    ("pac_fcn8s_vgg16+crf --dynamic", "pac_fcn8s_vgg16+crf", {}, None, True),
]


def _median_seconds(repeats: int, fn, *args) -> float:
    fn(*args)  # warm-up: allocations, onnxruntime's first-run graph work
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@click.command()
@click.option("--repeats", default=3, show_default=True)
@click.option("--size", default="480x640", show_default=True, help="HxW of the guide / image.")
@click.option("--markdown", type=click.Path(path_type=Path), default=None, help="Also write the table here.")
@click.option("--optimize/--no-optimize", default=False, show_default=True, help="As `densepac export --optimize`.")
def main(repeats: int, size: str, markdown: Path | None, optimize: bool) -> None:
    import onnxruntime as ort

    h, w = (int(v) for v in size.split("x"))
    scale = 8
    threads = torch.get_num_threads()
    scene = make_rgbd_scene(4242, h, w)
    guide = torch.from_numpy(scene["rgb"]).permute(2, 0, 1)[None].float()
    lines = [
        f"{h}x{w} guide / image, depth x{scale}, {threads} CPU threads for both runtimes, median of {repeats}, "
        f"{'optimized' if optimize else 'unoptimized'} files; parity = max |onnxruntime - PyTorch| / max "
        "|PyTorch| (random input: the export check, the worse of two sizes for --dynamic; scene: a procedural "
        "frame, its RGB for segmentation).",
        "",
        "| model | export s | file MB | parity, random | parity, scene | PyTorch s | onnxruntime s | speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    click.echo("\n".join(lines))
    with tempfile.TemporaryDirectory() as tmp:
        for label, name, kwargs, sampling, dynamic in CASES:
            model = load_model_for_inference(name, **kwargs)
            path = Path(tmp) / f"{name}_{sampling}_{dynamic}.onnx"
            depth_model = sampling is not None
            t0 = time.perf_counter()
            report = export_onnx(
                model, path, scale=scale if depth_model else None, size=(h, w), dynamic=dynamic, optimize=optimize
            )
            export_s = time.perf_counter() - t0
            if depth_model:
                depth = torch.from_numpy(simulate_lr(scene["depth"], scale, sampling))[None, None].float()
                inputs = {"depth_lr": depth, "guide": guide}
            else:
                inputs = {"image": guide}
            scene_parity = check_onnx(path, model, inputs).onnx_vs_torch
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.log_severity_level = 3
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            feed = {k: v.numpy() for k, v in inputs.items()}
            with torch.inference_mode():
                torch_s = _median_seconds(repeats, model, *inputs.values())
            ort_s = _median_seconds(repeats, session.run, None, feed)
            row = (
                f"| {label} | {export_s:.0f} | {path.stat().st_size / 1e6:.1f} | {report.parity.onnx_vs_torch:.1e} | "
                f"{scene_parity:.1e} | {torch_s:.2f} | {ort_s:.2f} | {torch_s / ort_s:.2f}x |"
            )
            click.echo(row)
            lines.append(row)
    if markdown is not None:
        markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
