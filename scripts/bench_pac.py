"""Time and peak memory of PacConv2d vs an unfold implementation vs nn.Conv2d.

Forward + backward, N=1, 64 -> 64 channels, gaussian kernel on a 16-channel guide.
Peak memory is measured with torch's CUDA allocator on a GPU, and on the CPU as the
largest sum of live tensor bytes seen by a ``TorchDispatchMode`` (allocator-independent).

    python scripts/bench_pac.py [--device cuda] [--sizes 128,256,512] [--kernels 3,5]
"""

from __future__ import annotations

import click
import torch
import torch.nn.functional as F

from densepac.engine.report import median_seconds
from densepac.ops import PacConv2d
from densepac.tiling import LiveTensorBytes


def unfold_pac(x: torch.Tensor, guide: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The straightforward PAC: unfold input and guide into (N, C, k*k, H, W) buffers."""
    n, c, h, w = x.shape
    k = weight.shape[-1]
    pad = k // 2
    cols = F.unfold(x, k, padding=pad).view(n, c, k * k, h, w)
    gcols = F.unfold(guide, k, padding=pad).view(n, guide.shape[1], k * k, h, w)
    kern = torch.exp(-0.5 * (gcols - guide.unsqueeze(2)).pow(2).sum(1, keepdim=True))
    prod = (cols * kern).view(n, c * k * k, h * w)
    out = torch.matmul(weight.view(weight.shape[0], -1), prod).view(n, -1, h, w)
    return out + bias.view(1, -1, 1, 1)


def measure(fn, device: str, repeats: int) -> tuple[float, float]:
    """Median seconds and peak MiB of ``fn()`` (forward + backward)."""
    seconds = median_seconds(fn, repeats, device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        with LiveTensorBytes() as mode:
            fn()
        peak = mode.peak / 2**20
    return seconds, peak


@click.command()
@click.option("--device", default="cpu", type=click.Choice(["cpu", "cuda"]))
@click.option("--sizes", default="128,256,512", help="Square image sizes, comma separated.")
@click.option("--kernels", default="3,5", help="Kernel sizes, comma separated.")
@click.option("--channels", default=64, show_default=True)
@click.option("--repeats", default=3, show_default=True)
def main(device: str, sizes: str, kernels: str, channels: int, repeats: int) -> None:
    torch.manual_seed(0)
    rows = []
    for k in (int(v) for v in kernels.split(",")):
        for size in (int(v) for v in sizes.split(",")):
            x = torch.randn(1, channels, size, size, device=device, requires_grad=True)
            g = torch.randn(1, 16, size, size, device=device, requires_grad=True)
            pac = PacConv2d(channels, channels, k, padding=k // 2).to(device)
            conv = torch.nn.Conv2d(channels, channels, k, padding=k // 2).to(device)
            cases = {
                "PacConv2d": lambda pac=pac, x=x, g=g: pac(x, g).sum().backward(),
                "unfold PAC": lambda pac=pac, x=x, g=g: unfold_pac(x, g, pac.weight, pac.bias).sum().backward(),
                "nn.Conv2d": lambda conv=conv, x=x: conv(x).sum().backward(),
            }
            res = {}
            for name, fn in cases.items():
                try:
                    res[name] = measure(fn, device, repeats)
                except RuntimeError as e:  # out of memory
                    res[name] = (float("nan"), float("nan"))
                    click.echo(f"  {name} k={k} {size}px failed: {str(e).splitlines()[0]}", err=True)
            rows.append((k, size, res))
    head = (
        f"| k | size | {'PacConv2d s':>11} | {'PacConv2d MiB':>13} | {'unfold s':>8} | {'unfold MiB':>10} "
        f"| {'Conv2d s':>8} | {'Conv2d MiB':>10} | mem PAC/unfold | time PAC/unfold | time PAC/Conv2d |"
    )
    click.echo(f"device: {device}, N=1, {channels}->{channels} channels, forward+backward, median of {repeats}")
    click.echo(head)
    click.echo("|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|")
    for k, size, r in rows:
        (tp, mp), (tu, mu), (tc, mc) = r["PacConv2d"], r["unfold PAC"], r["nn.Conv2d"]
        click.echo(
            f"| {k} | {size} | {tp:11.3f} | {mp:13.1f} | {tu:8.3f} | {mu:10.1f} | {tc:8.3f} | {mc:10.1f} | "
            f"{mp / mu:14.2f} | {tp / tu:15.2f} | {tp / tc:15.2f} |"
        )


if __name__ == "__main__":
    main()
