"""Side-by-side evaluation of depth models on one dataset: accuracy and speed tables."""

from __future__ import annotations

import csv
import io
import time
from typing import Any, Iterable

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from densepac.engine.metrics import DepthMetrics
from densepac.engine.report import markdown_table, synchronize
from densepac.engine.trainer import show_progress
from densepac.errors import InputError

COLUMNS = (("model", "model"), ("rmse_cm", "RMSE (cm)"), ("mae_cm", "MAE (cm)"), ("absrel", "AbsRel"),
           ("delta1", "δ<1.25"), ("sec_per_mp", "s / MP"))


def compare_depth_models(models: dict[str, nn.Module], dataset: Dataset, *, device: str | torch.device = "cpu",
                         crop: int = 0, progress: bool | None = None) -> list[dict[str, Any]]:
    """Evaluate every model on the same items, one image at a time.

    Metrics are pooled over all valid pixels of the set (:class:`DepthMetrics`); time is
    the model's forward alone (data loading excluded), in seconds per output megapixel.
    """
    device = torch.device(device)
    quiet = not show_progress(progress)
    items = [dataset[i] for i in tqdm(range(len(dataset)), desc="loading", disable=quiet, leave=False)]
    rows = []
    for label, model in models.items():
        model = model.to(device).eval()
        metrics, seconds, pixels = DepthMetrics(crop=crop), 0.0, 0
        with torch.inference_mode():
            model(items[0]["depth_lr"][None].to(device), items[0]["rgb"][None].to(device))  # warm-up
            for item in tqdm(items, desc=label, disable=quiet, leave=False):
                lr, rgb = item["depth_lr"][None].to(device), item["rgb"][None].to(device)
                synchronize(device)
                t0 = time.perf_counter()
                out = model(lr, rgb)
                synchronize(device)
                seconds += time.perf_counter() - t0
                pixels += out.shape[-1] * out.shape[-2]
                metrics.update(out.float(), item["depth"][None].to(device))
        m = metrics.compute()
        rows.append({"model": label, "rmse_cm": 100 * m["rmse"], "mae_cm": 100 * m["mae"], "absrel": m["absrel"],
                     "delta1": m["delta1"], "sec_per_mp": seconds / (pixels / 1e6)})
    return rows


def format_table(rows: Iterable[dict[str, Any]], fmt: str = "markdown") -> str:
    """Rows of :func:`compare_depth_models` as a Markdown table or CSV text."""
    rows = list(rows)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([key for key, _ in COLUMNS])
        for r in rows:
            writer.writerow([r[key] if key == "model" else f"{r[key]:.6g}" for key, _ in COLUMNS])
        return buf.getvalue()
    if fmt != "markdown":
        raise InputError(f"table format {fmt!r} is unknown; use markdown or csv")
    cells = ([r["model"], f"{r['rmse_cm']:.2f}", f"{r['mae_cm']:.2f}", f"{r['absrel']:.4f}", f"{r['delta1']:.4f}",
              f"{r['sec_per_mp']:.3f}"] for r in rows)
    return "\n".join(markdown_table([title for _, title in COLUMNS], cells)) + "\n"
