"""Depth upsampling on a real scene: Middlebury 2014 "Motorcycle" (shipped with scikit-image).

What it measures: the scene's dense ground-truth depth (496x736, metres, 7 % missing) is
reduced to low-resolution depth at x4/x8/x16 by point sampling (one HR pixel per LR pixel)
and by area sampling (mean of the valid HR pixels of each block), without noise. Every
model upsamples it guided by the left image; the score is the RMSE (cm) over valid
ground-truth pixels with a 6-pixel border excluded, and its ratio to bicubic.

Rows: ``bicubic``, ``guided_filter`` and ``joint_bilateral`` with their default arguments;
the two guided baselines again with arguments tuned on this very scene (a grid search per
sampling and scale, scored on the ground truth: the best a user could get from them, an
optimistic bound rather than a held-out result); every learned model with shipped weights
for the scale; and ``default``, the model ``densepac upsample`` uses at that scale. A last
table gives the time of one upsampling (first sampling measured: the median of ``--repeats``
runs after a warm-up), and a last line the default's time at x8 on a 480x640 crop of the
scene, the size of the cost target (median of at least 5 runs).

    OMP_NUM_THREADS=1 python scripts/bench_real.py [--scales 4,8,16] [--samplings point,area]
        [--models bicubic,joint_bilateral,pac_learned_jbu,default] [--no-tune] [--repeats 3]
        [--markdown FILE]

Needs scikit-image (``pip install densepac[real]``); about 3.5 minutes on two cores with the
default 3 repeats, less with ``--no-tune`` or ``--repeats 1``.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from torch import nn

from densepac.depth.inference import DEFAULT_REFINE, FALLBACK_DEPTH_MODEL, default_depth_model, upsample_depth
from densepac.depth.real import BORDER, load_motorcycle, make_lr, rmse_cm
from densepac.depth.recipe import BASELINES
from densepac.depth.sampling import estimate_sampling
from densepac.engine.report import markdown_table, median_seconds
from densepac.models import create_model, list_weights
from densepac.models.weights import shipped_card
from densepac.ops.consistency import SAMPLINGS

TUNED = " (tuned on this scene)"
REFINED = " + refine"

#: Search grids of the tuned baselines, narrowed from wider sweeps on this scene (guided
#: filter radius 0.125-2 LR px, eps 1e-6-1; joint bilateral sigma_spatial 0.25-2 LR px,
#: sigma_color 0.02-1, radius 1-4): values beyond these edges lost in every case tried,
#: except joint bilateral radii past 2 and eps below 1e-5, which moved it under 0.01 cm.
GRIDS: dict[str, dict[str, tuple]] = {
    "guided_filter": {"radius": (0.25, 0.5, 1.0), "eps": (1e-5, 1e-4, 1e-3, 1e-2)},
    "joint_bilateral": {"sigma_spatial": (0.35, 0.5, 0.7, 1.0), "sigma_color": (0.1, 0.2, 0.3), "radius": (1, 2)},
}


def upsample(model: nn.Module, depth_lr: np.ndarray, rgb: np.ndarray, refine: bool = False) -> np.ndarray:
    """Run one model on (h, w) LR metres and an (H, W, 3) guide as ``densepac upsample`` does: (H, W) metres.

    The sampling is left to ``auto`` (estimated from the map, as with no ``--sampling`` flag);
    learned models and refined rows end with source consistency, classical ones do not.
    """
    return upsample_depth(model, depth_lr, rgb, sampling="auto", refine=refine)


def timed_rmse(
    model: nn.Module, depth_lr: np.ndarray, rgb: np.ndarray, gt: np.ndarray, refine: bool = False, repeats: int = 1
) -> tuple[float, float]:
    """(RMSE in cm, median seconds of ``repeats`` upsamplings after a warm-up run; NaN for 0 repeats)."""
    out: dict[str, np.ndarray] = {}

    def run() -> None:
        out["depth"] = upsample(model, depth_lr, rgb, refine)

    if repeats == 0:
        run()
        return rmse_cm(out["depth"], gt), float("nan")
    seconds = median_seconds(run, repeats=repeats)
    return rmse_cm(out["depth"], gt), seconds


def target_seconds(rgb: np.ndarray, gt: np.ndarray, repeats: int) -> float:
    """Median seconds of ``densepac upsample``'s default at x8 (area-sampled input) on a 480x640 crop."""
    top, left = (gt.shape[0] - 480) // 2, (gt.shape[1] - 640) // 2
    crop = (slice(top, top + 480), slice(left, left + 640))
    depth_lr, guide = make_lr(gt[crop], 8, "area"), rgb[crop]
    model = create_model(default_depth_model(8), pretrained=default_depth_model(8) != FALLBACK_DEPTH_MODEL)
    return median_seconds(lambda: upsample(model, depth_lr, guide, DEFAULT_REFINE), repeats=repeats)


def tune(name: str, depth_lr: np.ndarray, rgb: np.ndarray, gt: np.ndarray, sampling: str) -> dict[str, Any]:
    """Arguments of baseline ``name`` from :data:`GRIDS` with the lowest RMSE on ``gt``."""
    grid = GRIDS[name]
    candidates = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    return min(candidates, key=lambda kw: rmse_cm(upsample(create_model(name, **kw), depth_lr, rgb), gt))


def learned_models(scale: int) -> dict[str, str]:
    """{family (name without ``_xS``): shipped weights name} for the learned models of ``scale``."""
    found = {}
    for name in list_weights():
        card = shipped_card(name)
        if card is not None and card.kwargs.get("scale") == scale:
            found[name.removesuffix(f"_x{scale}")] = name
    return found


def _format_kwargs(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in kwargs.items())


def _comma_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def select_rows(model_filter: str | None, families: list[str], no_tune: bool) -> list[str]:
    """Row keys in table order: baselines (each followed by its tuned row), learned families (each
    followed by its refined row, as bicubic is), default."""
    known = [*BASELINES, FALLBACK_DEPTH_MODEL, *families, "default"]
    wanted = set(_comma_list(model_filter)) if model_filter else set(known)
    if wanted - set(known):
        raise click.BadParameter(
            f"unknown {', '.join(sorted(wanted - set(known)))}; choose from {', '.join(known)}", param_hint="--models"
        )
    wanted.add("bicubic")  # every ratio is to bicubic
    rows = []
    for key in known:
        if key in wanted:
            rows.append(key)
            if key in GRIDS and not no_tune:
                rows.append(key + TUNED)
            if key == "bicubic" or key in families:
                rows.append(key + REFINED)
    return rows


def run_scale(
    sampling: str, scale: int, row_keys: list[str], rgb: np.ndarray, gt: np.ndarray, repeats: int
) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """{row key: (RMSE cm, seconds of ``repeats`` runs)} at one sampling and scale, and the tuned arguments chosen."""
    depth_lr = make_lr(gt, scale, sampling)
    learned = learned_models(scale)
    default = default_depth_model(scale)
    done: dict[str, tuple[float, float]] = {}  # by model: "default" repeats another row
    results, chosen = {}, []
    for key in row_keys:
        if key.endswith(TUNED):
            base = key.removesuffix(TUNED)
            click.echo(f"{sampling} x{scale}: tuning {base} over {GRIDS[base]}", err=True)
            kwargs = tune(base, depth_lr, rgb, gt, sampling)
            chosen.append(f"x{scale} {base}: {_format_kwargs(kwargs)}")
            name = f"{base}({_format_kwargs(kwargs)})"
            click.echo(f"{sampling} x{scale}: {name}", err=True)
            results[key] = timed_rmse(create_model(base, **kwargs), depth_lr, rgb, gt, repeats=repeats)
            continue
        refine = key.endswith(REFINED) or (key == "default" and DEFAULT_REFINE)
        base = key.removesuffix(REFINED)
        name = default if key == "default" else learned.get(base, base)
        if name not in (*BASELINES, FALLBACK_DEPTH_MODEL) and name not in learned.values():
            continue  # a learned family without shipped weights at this scale
        if (name, refine) not in done:
            click.echo(f"{sampling} x{scale}: {name}{REFINED if refine else ''}", err=True)
            model = create_model(name, pretrained=name not in (*BASELINES, FALLBACK_DEPTH_MODEL))
            done[name, refine] = timed_rmse(model, depth_lr, rgb, gt, refine, repeats)
        results[key] = done[name, refine]
    return results, chosen


@click.command()
@click.option("--scales", default="4,8,16", show_default=True, help="Comma list of upsampling factors.")
@click.option(
    "--samplings",
    default=",".join(SAMPLINGS),
    show_default=True,
    help="Comma list of how LR depth is made: point, area.",
)
@click.option(
    "--models",
    "model_filter",
    default=None,
    help="Comma list of rows to keep: baseline names (their tuned rows too), learned model "
    "families such as pac_learned_jbu, and default. Default: all.",
)
@click.option("--no-tune", is_flag=True, help="Skip the grid search of the guided baselines (quick runs).")
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Timed runs per time-table cell (their median, after a warm-up).",
)
@click.option("--markdown", type=click.Path(path_type=Path), default=None, help="Also write the tables here.")
def main(
    scales: str, samplings: str, model_filter: str | None, no_tune: bool, repeats: int, markdown: Path | None
) -> None:
    if not all(s.isdigit() and int(s) in (2, 4, 8, 16) for s in _comma_list(scales)):
        raise click.BadParameter(
            f"{scales!r}; give factors that divide the 496x736 scene: 2, 4, 8, 16", param_hint="--scales"
        )
    scale_list = [int(s) for s in _comma_list(scales)]
    sampling_list = _comma_list(samplings)
    for s in sampling_list:
        if s not in SAMPLINGS:
            raise click.BadParameter(f"{s!r} is not one of {', '.join(SAMPLINGS)}", param_hint="--samplings")
    row_keys = select_rows(model_filter, sorted({f for s in scale_list for f in learned_models(s)}), no_tune)

    scene = load_motorcycle()
    rgb, gt = scene["rgb"], scene["depth"]
    titles = ["model", *(f"x{s}" for s in scale_list)]
    lines = [
        f"{scene['name']}: {gt.shape[0]}x{gt.shape[1]} guide (scikit-image's quarter-resolution copy, "
        f"centre crop), {np.mean(gt == 0):.1%} of the ground truth missing; LR depth made from the ground "
        f"truth without noise. RMSE (cm) over valid ground-truth pixels, {BORDER} px border excluded; "
        f"in brackets the ratio to bicubic. Default model: "
        + ", ".join(f"x{s} {default_depth_model(s)}" for s in scale_list)
        + ".",
        "",
    ]
    seconds: dict[tuple[str, int], float] = {}
    estimates = []
    for sampling in sampling_list:
        results, chosen = {}, []
        timed = repeats if sampling == sampling_list[0] else 0
        for scale in scale_list:
            estimates.append(f"{sampling} x{scale} -> {estimate_sampling(make_lr(gt, scale, sampling))}")
            results[scale], tuned = run_scale(sampling, scale, row_keys, rgb, gt, timed)
            chosen += tuned
            for key, (_, sec) in results[scale].items():
                seconds.setdefault((key, scale), sec)  # timed on the first sampling
        rows = [
            [
                key,
                *(
                    f"{r[key][0]:.2f} ({r[key][0] / r['bicubic'][0]:.2f}x)" if key in r else "-"
                    for r in results.values()
                ),
            ]
            for key in row_keys
        ]
        lines += [f"**{sampling} sampling**", "", *markdown_table(titles, rows)]
        if chosen:
            lines += ["", "Tuned arguments (radius and sigma_spatial in LR pixels): " + "; ".join(chosen) + "."]
        lines.append("")
    lines += ["`--sampling auto` estimated: " + ", ".join(estimates) + ".", ""]
    time_rows = [
        [key, *(f"{seconds[key, s]:.2f}" if (key, s) in seconds else "-" for s in scale_list)] for key in row_keys
    ]
    lines += [
        f"**seconds per upsampling** ({sampling_list[0]} sampling, median of {repeats} after a warm-up; "
        f"torch threads: {torch.get_num_threads()})",
        "",
        *markdown_table(titles, time_rows),
        "",
        f"`densepac upsample` default at x8 on a 480x640 crop of the scene (area sampling, median of "
        f"{max(repeats, 5)}): {target_seconds(rgb, gt, max(repeats, 5)):.2f} s.",
    ]
    text = "\n".join(lines) + "\n"
    click.echo(text)
    if markdown is not None:
        markdown.write_text(text)


if __name__ == "__main__":
    main()
