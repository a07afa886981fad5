"""Side-by-side evaluation of depth models on one dataset: accuracy and speed tables."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from densepac.engine.metrics import DepthMetrics
from densepac.engine.report import markdown_table, synchronize
from densepac.engine.trainer import show_progress
from densepac.errors import InputError
from densepac.io.files import PathLike

COLUMNS = (
    ("model", "model"),
    ("rmse_cm", "RMSE (cm)"),
    ("mae_cm", "MAE (cm)"),
    ("absrel", "AbsRel"),
    ("delta1", "δ<1.25"),
    ("sec_per_mp", "s / MP"),
)


def compare_depth_models(
    models: dict[str, nn.Module],
    dataset: Dataset,
    *,
    device: str | torch.device = "cpu",
    crop: int = 0,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
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
        rows.append(
            {
                "model": label,
                "rmse_cm": 100 * m["rmse"],
                "mae_cm": 100 * m["mae"],
                "absrel": m["absrel"],
                "delta1": m["delta1"],
                "sec_per_mp": seconds / (pixels / 1e6),
            }
        )
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
    cells = (
        [
            r["model"],
            f"{r['rmse_cm']:.2f}",
            f"{r['mae_cm']:.2f}",
            f"{r['absrel']:.4f}",
            f"{r['delta1']:.4f}",
            f"{r['sec_per_mp']:.3f}",
        ]
        for r in rows
    )
    return "\n".join(markdown_table([title for _, title in COLUMNS], cells)) + "\n"


def parse_named_weights(pairs: Iterable[str]) -> dict[str, Path]:
    """``NAME=FILE`` strings (the ``--weights`` of ``densepac eval``) as {model name: file}."""
    out = {}
    for pair in pairs:
        name, sep, file = pair.partition("=")
        if not sep or not name:
            raise InputError(
                f"--weights {pair!r} is not NAME=FILE; e.g. --weights pac_jointupsample_x8=run/best.safetensors"
            )
        out[name] = Path(file)
    return out


def evaluate_depth(
    models: Sequence[str] | None = None,
    weights: dict[str, PathLike] | None = None,
    *,
    data: str = "synthetic",
    split: str = "test",
    scale: int = 8,
    protocol: str = "point",
    num_scenes: int = 50,
    crop: int = 0,
    device: str = "auto",
    markdown: PathLike | None = None,
    csv_path: PathLike | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """What ``densepac eval`` does: compare depth models on one dataset, optionally writing the tables.

    ``models`` default to the three baselines and the shipped default for ``scale``; a model
    in ``weights`` runs with that file, every other learned model with its shipped weights.
    Output paths are checked before anything runs; tables are written atomically (both or none).
    """
    from densepac.depth.datasets import make_depth_dataset
    from densepac.depth.inference import default_depth_model
    from densepac.depth.recipe import BASELINES
    from densepac.inference import load_model_for_inference, resolve_device
    from densepac.io.files import atomic_write, check_output, remove_on_failure
    from densepac.models.registry import require_task

    weights = {n: Path(f) for n, f in (weights or {}).items()}
    names = list(models) if models is not None else list(dict.fromkeys([*BASELINES, default_depth_model(scale)]))
    names += [n for n in weights if n not in names]
    if not names:
        raise InputError("no model to evaluate; pass --models a,b,c or --weights NAME=FILE")
    tables = [(Path(p), fmt) for p, fmt in ((markdown, "markdown"), (csv_path, "csv")) if p is not None]
    if len(tables) == 2 and tables[0][0].resolve() == tables[1][0].resolve():
        raise InputError(f"--markdown and --csv both name {markdown}; give the tables two file names")
    for path, fmt in tables:  # fail now, not after the evaluation
        check_output(path, kind=fmt, overwrite=overwrite)
    for n in names:
        require_task(n, "depth")
    loaded = {n: load_model_for_inference(n, weights.get(n)) for n in names}
    for n, m in loaded.items():
        if m.task != "depth":
            raise InputError(f"model {n!r} is a {m.task} model; densepac eval compares depth models")
        if getattr(m, "scale", scale) != scale:
            raise InputError(f"model {n!r} upsamples x{m.scale}, not --scale {scale}")
    dataset = make_depth_dataset(data, split, scale, protocol=protocol, num_scenes=num_scenes)
    rows = compare_depth_models(loaded, dataset, device=resolve_device(device), crop=crop, progress=progress)
    written: list[Path] = []
    for path, fmt in tables:
        with remove_on_failure(written), atomic_write(path, overwrite=overwrite) as tmp:
            tmp.write_text(format_table(rows, fmt))
        written.append(path)
    return rows
