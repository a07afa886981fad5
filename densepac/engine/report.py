"""Timing and tables for benchmarks and experiment scripts of both tasks."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], Any], repeats: int = 3, device: str | torch.device = "cpu") -> float:
    """Median wall time (s) of ``repeats`` calls of ``fn`` after one untimed warm-up call."""
    device = torch.device(device)
    fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def markdown_table(titles: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Lines of a Markdown table: header, separator, then one line per row of formatted cells."""
    return ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)] + [
        "| " + " | ".join(cells) + " |" for cells in rows
    ]
