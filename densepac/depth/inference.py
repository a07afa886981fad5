"""Upsampling a user's depth map with a trained model (numpy in, numpy out), tiled and memory-bounded."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from densepac.check import check_model_task, check_rgb_array
from densepac.depth.models.base import infer_scale
from densepac.depth.sampling import resolve_sampling
from densepac.errors import InputError, InputTypeError
from densepac.io.files import PathLike
from densepac.ops.consistency import source_consistency_
from densepac.ops.fill import valid_mask
from densepac.ops.refine import graph_refine
from densepac.tiling import (
    MemoryModel,
    Tile,
    budget_bytes,
    cached_memory_model,
    largest_tensor_bytes,
    measure_memory,
    memory_in_use,
    run_tiles,
    tiles_for_budget,
    warn_if_over,
)

MAX_SCALE = 64

_log = logging.getLogger(__name__)


FALLBACK_DEPTH_MODEL = "graph_sr"


def resolve_scale(lr_shape: tuple[int, int], guide_shape: tuple[int, int], scale: int | None) -> int:
    """The upsampling factor, inferred from the shapes or checked against ``scale``."""
    (h, w), (H, W) = lr_shape, guide_shape
    if scale is not None and not (2 <= scale <= MAX_SCALE):
        raise InputError(f"scale {scale} is out of range; use an integer factor between 2 and {MAX_SCALE}")
    try:
        inferred = infer_scale((h, w), (H, W))
    except ValueError:
        s = scale or max(2, round(H / h))
        raise InputError(
            f"guide {H}x{W} is not {s}x the depth {h}x{w}; expected a guide of {h * s}x{w * s} "
            "(crop or resize the guide, or pass the depth that belongs to it)"
        ) from None
    if scale is not None and inferred != scale:
        raise InputError(
            f"guide {H}x{W} is {inferred}x the depth {h}x{w}, not --scale {scale}; "
            "drop --scale or pass the matching files"
        )
    if not (2 <= inferred <= MAX_SCALE):
        raise InputError(
            f"guide {H}x{W} and depth {h}x{w} give scale x{inferred}; densepac upsamples by factors 2 to {MAX_SCALE}"
        )
    return inferred


def auto_tile(scale: int, max_hr_tile: int = 1024) -> int:
    """LR tile size whose HR tile is about ``max_hr_tile`` pixels wide (bounds memory)."""
    return max(8, max_hr_tile // scale)


def upsample_depth(
    model: nn.Module,
    depth_lr: np.ndarray,
    guide: np.ndarray,
    device: torch.device | str = "cpu",
    tile: int | None = None,
    max_memory: int | str | None = None,
    progress: bool = False,
    sampling: str = "auto",
    refine: bool = False,
    consistency: bool | None = None,
) -> np.ndarray:
    """Upsample one depth map, in tiles when it is large.

    The model's output can be followed by two steps that use what an LR pixel stands for
    (``sampling``): the edge-aware graph refinement (:func:`~densepac.ops.graph_refine`,
    starting from the model's output) and source consistency
    (:func:`~densepac.ops.source_consistency`: the output, sampled as the input was,
    reproduces every valid input pixel).

    Args:
        model: a registry depth model.
        depth_lr: (h, w) float32 metres, 0 = missing.
        guide: (H, W, 3) float32 RGB in [0, 1], H = s*h, W = s*w.
        tile: LR tile size; None picks :func:`auto_tile`, 0 disables tiling. Tiled and
            untiled model outputs are the same (each tile carries ``model.tile_margin``
            context); the refinement, a global solve, runs on tiles with
            :data:`REFINE_MARGIN` LR pixels of context, close to but not exactly its untiled result.
        max_memory: instead of ``tile``, a budget (bytes, or a string such as ``"2GiB"``, see
            :func:`~densepac.tiling.parse_memory`) for the process's peak memory (resident
            set on CPU, allocated device memory on CUDA): the largest tiles that fit, no
            tiling when the whole image does (:func:`depth_tiles_for_budget`).
        progress: a tqdm bar over the tiles (on a terminal, with several tiles).
        sampling: ``"point"``, ``"area"`` or ``"auto"`` (estimated from the map,
            :func:`~densepac.depth.sampling.estimate_sampling`): what an LR pixel stands for.
        refine: run the graph refinement after the model.
        consistency: apply source consistency; None: for learned models and after refinement.
            The result is then clamped to :data:`CONSISTENCY_RANGE` times the valid input's
            depth range (the correction can overshoot beside thin structures, even below 0).

    Returns:
        (H, W) float32 metres.

    Raises:
        InputError: depth not 2-D, negative or all missing; guide not (H, W, 3) (uint8 and
            uint16 guides are scaled to [0, 1]) or not an integer multiple of the depth;
            unknown ``sampling``; ``model`` not a depth model or an argument not a numpy array.
    """
    depth_lr, guide = _check_upsample_inputs(model, depth_lr, guide)
    asked, sampling = sampling, resolve_sampling(sampling, depth_lr)
    if asked == "auto":
        _log.info("sampling: %s (estimated from the depth map)", sampling)
    if consistency is None:
        consistency = refine or getattr(model, "refines", False) or any(True for _ in model.parameters())
    device = torch.device(device)
    model = model.to(device).eval()
    d = torch.from_numpy(np.ascontiguousarray(depth_lr, dtype=np.float32))[None, None].to(device)
    g = torch.from_numpy(np.ascontiguousarray(guide, dtype=np.float32)).permute(2, 0, 1)[None].to(device)
    scale = infer_scale(tuple(d.shape[-2:]), tuple(g.shape[-2:]))
    if tile is not None and max_memory is not None:
        raise InputError("give a tile size or a memory budget, not both (the budget picks the tiles)")
    with torch.inference_mode():
        if max_memory is not None:
            tile = depth_tiles_for_budget(model, d, g, max_memory) or 0
        elif tile is None:
            tile = auto_tile(scale)
        # A model that solves the refinement itself takes the sampling and is not refined twice.
        solves = getattr(model, "refines", False)
        extra = {"sampling": sampling} if solves else {}
        if tile:
            out = tiled_upsample(model, d, g, tile=tile, margin=model.tile_margin, progress=progress, **extra)
        else:
            out = model(d, g, **extra)
        if refine and not solves:
            # Solved in tiles of at most auto_tile: CG on a whole large graph converges slowly.
            cap = auto_tile(scale)
            if max_memory is not None:  # the refinement has its own plan; the model's tiles do not bound it
                planned = refine_tiles_for_budget(out, d, g, sampling, max_memory)
                refine_tile = cap if planned is None else (min(planned[0], cap), min(planned[1], cap))
            else:
                refine_tile = min(tile or cap, cap)
            out = tiled_refine(out, d, g, sampling, tile=refine_tile, progress=progress)
        if consistency:
            out = source_consistency_(out, d, sampling)
            # The smooth correction can overshoot beside thin structures, even below 0 m. An
            # area-sampled scene reaches beyond its block means (exactness needs that), so the
            # bound only removes the absurd: a tenth of the nearest input depth to ten times the farthest.
            valid = d[valid_mask(d)]
            out.clamp_(CONSISTENCY_RANGE[0] * float(valid.min()), CONSISTENCY_RANGE[1] * float(valid.max()))
    return out[0, 0].float().cpu().numpy()


#: Factors on the nearest and farthest valid input depth that bound a source-consistent output.
CONSISTENCY_RANGE = (0.1, 10.0)

#: Whether ``densepac upsample`` (and :func:`upsample_file`) refine by default: the graph
#: refinement is what makes guided upsampling hold on real scenes (scripts/bench_real.py).
DEFAULT_REFINE = True
#: LR pixels of context each refinement tile sees beyond the part it keeps.
REFINE_MARGIN = 16


def tiled_refine(
    depth_init: torch.Tensor,
    depth_lr: torch.Tensor,
    guide: torch.Tensor,
    sampling: str,
    tile: int | tuple[int, int] = 128,
    margin: int = REFINE_MARGIN,
    progress: bool = False,
    **params: Any,
) -> torch.Tensor:
    """:func:`~densepac.ops.graph_refine` tile by tile (LR ``tile`` + ``margin`` px windows).

    Memory depends on ``tile``, not on the image; an image that fits one tile is solved whole.
    """
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    h, w = depth_lr.shape[-2:]
    s = guide.shape[-1] // w
    if h <= th and w <= tw:
        return graph_refine(depth_init, depth_lr, guide, sampling, **params)

    def run(t: Tile) -> torch.Tensor:
        lr_win, hr_win = t.window(), t.window(s)
        return graph_refine(
            depth_init[(..., *hr_win)], depth_lr[(..., *lr_win)], guide[(..., *hr_win)], sampling, **params
        )

    return run_tiles(run, (h, w), (th, tw), margin, scale=s, progress=progress, desc="refine tiles")


def default_depth_model(scale: int) -> str:
    """The shipped depth model marked default for ``scale`` in its card, else joint bilateral."""
    from densepac.models.weights import list_weights, shipped_card

    for name in list_weights():
        card = shipped_card(name)
        if card.default and card.kwargs.get("scale") == scale:
            return name
    return FALLBACK_DEPTH_MODEL


def tiled_upsample(
    model: nn.Module,
    depth_lr: torch.Tensor,
    guide: torch.Tensor,
    tile: int | tuple[int, int] = 128,
    margin: int = 16,
    progress: bool = False,
    **kwargs: Any,
) -> torch.Tensor:
    """Run a depth model tile by tile so memory depends on ``tile``, not on the image.

    The model's global step (:meth:`DepthModel.prepare`) runs once; its local ``core`` runs
    on LR tiles of ``tile`` pixels plus ``margin`` pixels of context on each side, of which
    only the centre is kept (:func:`densepac.tiling.run_tiles`). With a margin beyond the
    model's receptive field the result equals untiled inference.

    Args:
        depth_lr: (N, 1, h, w) metres; guide: (N, 3, h*s, w*s) RGB in [0, 1].
        tile: LR tile size, or (th, tw); margin: in LR pixels.
        **kwargs: passed to the model (``sampling`` for models that solve the refinement).
    """
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    if th < 1 or tw < 1 or margin < 0:
        raise InputError(f"tile={tile} and margin={margin} must be positive and non-negative")
    scale = model.check_inputs(depth_lr, guide)
    h, w = depth_lr.shape[-2:]
    if h <= th and w <= tw:
        return model(depth_lr, guide, **kwargs)
    inputs, restore = model.prepare(depth_lr)

    def run(t: Tile) -> torch.Tensor:
        return model.core(*(x[(..., *t.window())] for x in inputs), guide[(..., *t.window(scale))], **kwargs)

    return restore(run_tiles(run, (h, w), (th, tw), margin, scale=scale, progress=progress, desc="upsample tiles"))


#: Smallest kept tile a memory budget may ask for (LR pixels for depth, pixels for segmentation).
MIN_DEPTH_TILE = 8


def depth_memory_model(model: nn.Module, scale: int, device: torch.device | str = "cpu") -> MemoryModel:
    """Peak bytes of ``model.core`` on an LR window, per LR pixel (see :mod:`densepac.tiling`).

    Measured once per model, scale and device on windows of about 64 and 128 HR pixels.
    """
    device = torch.device(device)
    side = max(4, 64 // scale)

    def measure() -> MemoryModel:
        with torch.inference_mode():
            return measure_memory(
                lambda h, w: _depth_window(model, scale, device, h, w),
                model.core,
                [(side, side), (2 * side, 2 * side)],
                fixed=largest_tensor_bytes(model),
            )

    return cached_memory_model(model, ("depth", scale, device.type), measure)


def _depth_window(model: nn.Module, scale: int, device: torch.device, h: int, w: int) -> tuple:
    """Random inputs of ``model.core`` for an LR window of (h, w): prepared LR maps and the guide."""
    inputs, _ = model.prepare(torch.rand(1, 1, h, w, device=device) + 1)
    return (*inputs, torch.rand(1, 3, h * scale, w * scale, device=device))


def _held_after_inference(n: int, h: int, w: int, scale: int) -> int:
    """Bytes the steps after the model hold beyond what planning saw: the HR output, a file
    writer's float32 copy of it and its encoded bytes, and source consistency's float64
    spread matrices (a few copies while they are built)."""
    return 3 * n * h * w * scale * scale * 4 + 4 * 8 * scale * (h * h + w * w)


def depth_tiles_for_budget(
    model: nn.Module, depth_lr: torch.Tensor, guide: torch.Tensor, max_memory: int | str
) -> tuple[int, int] | None:
    """LR tile (th, tw) for :func:`tiled_upsample` under ``max_memory``, or None: untiled fits.

    Raises InputError when even the smallest tile does not fit (the message gives the budget
    that would).
    """
    budget = budget_bytes(max_memory)
    warn_if_over(budget, depth_lr.device)
    scale = model.check_inputs(depth_lr, guide)
    n, _, h, w = depth_lr.shape
    memory = depth_memory_model(model, scale, depth_lr.device)
    # Stitching holds the HR output and its restored copy; prepare() adds a few LR maps.
    outputs = 2 * n * h * w * scale * scale * 4 + n * h * w * 4 * 8
    return tiles_for_budget(
        (h, w),
        budget,
        memory_in_use(depth_lr.device),
        outputs,
        memory,
        model.tile_margin,
        # Kept tiles narrower than the margin would spend most of their time on context.
        min_tile=max(MIN_DEPTH_TILE, model.tile_margin),
        what=getattr(model, "model_name", type(model).__name__),
        unit=f"LR px (x{scale})",
        check=lambda wh, ww: partial(model.core, *_depth_window(model, scale, depth_lr.device, wh, ww)),
        device=depth_lr.device,
        after=_held_after_inference(n, h, w, scale),
    )


def refine_tiles_for_budget(
    depth_init: torch.Tensor, depth_lr: torch.Tensor, guide: torch.Tensor, sampling: str, max_memory: int | str
) -> tuple[int, int] | None:
    """LR tile (th, tw) for :func:`tiled_refine` under ``max_memory``, or None: the whole map fits.

    Planned after the model ran: what the process holds then (its output included) is in use.
    Raises InputError when even the smallest tile does not fit.
    """
    budget = budget_bytes(max_memory)
    n, _, h, w = depth_lr.shape
    scale = guide.shape[-1] // w
    device = depth_lr.device
    side = max(4, 64 // scale)

    def make_inputs(hh: int, ww: int) -> tuple:
        lr = torch.rand(1, 1, hh, ww, device=device) + 1
        hr = torch.rand(1, 1, hh * scale, ww * scale, device=device) + 1
        return hr, lr, torch.rand(1, 3, hh * scale, ww * scale, device=device)

    with torch.inference_mode():
        memory = measure_memory(
            make_inputs, lambda *x: graph_refine(*x, sampling), [(side, side), (2 * side, 2 * side)]
        )
    return tiles_for_budget(
        (h, w),
        budget,
        memory_in_use(device),
        n * h * w * 4 * scale * scale,  # the stitched output
        memory,
        REFINE_MARGIN,
        min_tile=max(MIN_DEPTH_TILE, REFINE_MARGIN),
        what="the graph refinement",
        unit=f"LR px (x{scale})",
        check=lambda wh, ww: partial(graph_refine, *make_inputs(wh, ww), sampling),
        device=device,
        after=_held_after_inference(n, h, w, scale),
    )


def _check_upsample_inputs(model: nn.Module, depth_lr: np.ndarray, guide: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated (depth (h, w) float32 metres, guide (H, W, 3) float32) for :func:`upsample_depth`."""
    from densepac.io.depth import validate_depth

    check_model_task(model, "depth")
    guide = check_rgb_array(guide, "guide")
    if isinstance(depth_lr, torch.Tensor):
        raise InputTypeError("depth_lr must be a numpy (h, w) array, got a torch.Tensor; pass tensor.numpy()")
    depth_lr = validate_depth(depth_lr, "depth_lr")
    try:
        infer_scale(depth_lr.shape, guide.shape[:2])
    except ValueError as e:
        raise InputError(f"{e}; crop or resize the guide to an integer multiple of the depth") from None
    return depth_lr, guide


@dataclass(frozen=True)
class UpsampleReport:
    """What :func:`upsample_file` wrote: the output path, its size (H, W), the model, scale and device."""

    output: Path
    size: tuple[int, int]
    model: str
    scale: int
    device: str


def upsample_file(
    depth: PathLike,
    guide: PathLike,
    output: PathLike,
    *,
    model: str | None = None,
    weights: PathLike | None = None,
    scale: int | None = None,
    depth_scale: float = 1000.0,
    preview: PathLike | None = None,
    tile: int | None = None,
    max_memory: int | str | None = None,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
    sampling: str = "auto",
    refine: bool = DEFAULT_REFINE,
    pointcloud: PathLike | None = None,
    intrinsics: str | tuple[float, float, float, float] | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> UpsampleReport:
    """Upsample the depth file ``depth`` to the resolution of the RGB file ``guide``; write ``output``.

    Everything is checked before the model runs (outputs writable and not in the way,
    inputs readable, shapes and scale, model task); outputs are written atomically, and a
    failed preview removes the depth it follows, so nothing is left half done.

    Args:
        model: registry depth model (default: the shipped default for the scale, or the
            model named by the card beside ``weights``).
        weights: a weights file for ``model``.
        scale: the factor, checked against the shapes (default: inferred from them).
        depth_scale: units per metre of integer depth files (1000: millimetres).
        preview: also write a colorised guide | input | output PNG here.
        tile, max_memory, sampling, refine: see :func:`upsample_depth`.
        pointcloud, intrinsics: also write the output as a coloured point cloud (binary PLY,
            missing pixels dropped) with the guide camera's ``fx,fy,cx,cy`` (pixels).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        model_kwargs: architecture arguments over the model card's (e.g. ``self_ensemble=1``).
    """
    from densepac.inference import load_model_for_inference, resolve_device
    from densepac.io.depth import DEPTH_EXTENSIONS, check_depth_scale, read_depth, validate_depth, write_depth
    from densepac.io.files import check_output, remove_on_failure
    from densepac.io.images import IMAGE_EXTENSIONS, read_image, write_image
    from densepac.io.pointcloud import PLY_EXTENSIONS, depth_to_points, parse_intrinsics, write_ply
    from densepac.io.visualize import depth_preview
    from densepac.models.registry import require_task

    output = check_output(output, DEPTH_EXTENSIONS, "depth", overwrite)  # fail now, not after the model ran
    if preview is not None:
        if Path(preview).resolve() == output.resolve():
            raise InputError(f"--preview {preview} is the -o output file; give the preview another name")
        preview = check_output(preview, IMAGE_EXTENSIONS, "image", overwrite)
    if tile is not None and tile < 0:
        raise InputError(f"--tile {tile} is negative; give a tile size in LR pixels, or 0 to disable tiling")
    if tile is not None and max_memory is not None:
        raise InputError("--tile and --max-memory both given; drop --tile to let the budget pick the tiles")
    if (pointcloud is None) != (intrinsics is None):
        raise InputError("--pointcloud needs --intrinsics fx,fy,cx,cy (and the other way round)")
    if pointcloud is not None:
        pointcloud = check_output(pointcloud, PLY_EXTENSIONS, "point cloud", overwrite)
        if isinstance(intrinsics, str):
            intrinsics = parse_intrinsics(intrinsics)
    check_depth_scale(depth_scale, "--depth-scale")
    dev = resolve_device(device)
    depth_lr = validate_depth(read_depth(depth, depth_scale), str(depth))
    rgb = read_image(guide)
    try:
        factor = resolve_scale(depth_lr.shape, rgb.shape[:2], scale)
    except InputError as e:
        raise InputError(f"{guide} and {depth}: {e}") from None
    require_task(model, "depth")
    name = model or (None if weights is not None else default_depth_model(factor))
    net = load_model_for_inference(name, weights, **(model_kwargs or {}))
    if getattr(net, "task", None) != "depth":
        source = f"{weights}: " if weights is not None else ""
        raise InputError(
            f"{source}model {net.model_name!r} is a {net.task} model; pick one from `densepac models --task depth`"
        )
    out = upsample_depth(
        net, depth_lr, rgb, dev, tile, max_memory=max_memory, progress=progress, sampling=sampling, refine=refine
    )
    picture = depth_preview(rgb, depth_lr, out) if preview is not None else None
    write_depth(output, out, depth_scale, overwrite=overwrite)
    if picture is not None:
        with remove_on_failure([output]):
            write_image(preview, picture, overwrite=overwrite)
    if pointcloud is not None:
        with remove_on_failure([output, *([preview] if preview is not None else [])]):
            write_ply(pointcloud, *depth_to_points(out, intrinsics, rgb), overwrite=overwrite)
    return UpsampleReport(output, out.shape, net.model_name, factor, dev.type)


@dataclass(frozen=True)
class FolderReport:
    """What :func:`upsample_folder` did: the files written, and each skipped pair with why."""

    written: list[Path]
    skipped: list[tuple[str, str]]


def pair_folders(depth_dir: PathLike, guide_dir: PathLike) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
    """The (depth, guide) pairs of two folders, matched by file stem as the folder dataset reader does.

    Returns the pairs and, for :func:`upsample_pairs`, each file without a partner with why.
    """
    from densepac.data.folders import index_folder
    from densepac.io.depth import DEPTH_EXTENSIONS
    from densepac.io.images import IMAGE_EXTENSIONS

    depths = index_folder(Path(depth_dir), DEPTH_EXTENSIONS, "depth")
    guides = index_folder(Path(guide_dir), IMAGE_EXTENSIONS, "image", prefer=True)
    if not depths:
        raise InputError(f"{depth_dir} holds no depth file ({', '.join(DEPTH_EXTENSIONS)}); check the folder")
    skipped = [(str(depths[s]), f"no guide {s}.* in {guide_dir}") for s in sorted(set(depths) - set(guides))]
    skipped += [(str(guides[s]), f"no depth {s}.* in {depth_dir}") for s in sorted(set(guides) - set(depths))]
    return [(depths[s], guides[s]) for s in sorted(set(depths) & set(guides))], skipped


def upsample_folder(depth_dir: PathLike, guide_dir: PathLike, out_dir: PathLike, **options: Any) -> FolderReport:
    """Upsample every depth file of ``depth_dir`` with the guide of the same name in ``guide_dir``.

    Each output is ``out_dir/<stem><depth file's extension>``; ``options`` are those of
    :func:`upsample_pairs`.
    """
    pairs, skipped = pair_folders(depth_dir, guide_dir)
    return upsample_pairs(pairs, out_dir, skipped=skipped, **options)


def read_pair_list(path: PathLike) -> list[tuple[Path, Path]]:
    """The (depth, guide) pairs of a list file: two paths per line, quoted if they hold spaces.

    Relative paths are relative to the list file's folder; blank lines and ``#`` comments are
    skipped. A line that is not two paths is refused with its number.
    """
    import shlex

    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the list file ({e})") from None
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            fields = shlex.split(line, comments=True)
        except ValueError as e:
            raise InputError(f"{path}:{number}: {e}; quote paths that hold spaces") from None
        if not fields:
            continue
        if len(fields) != 2:
            raise InputError(f"{path}:{number}: expected two paths (DEPTH GUIDE), found {len(fields)}")
        pairs.append(tuple(path.parent / f for f in fields))
    if not pairs:
        raise InputError(f"{path} lists no pair; write one `DEPTH GUIDE` pair of paths per line")
    return pairs


def upsample_pairs(
    pairs: Sequence[tuple[PathLike, PathLike]],
    out_dir: PathLike,
    *,
    model: str | None = None,
    weights: PathLike | None = None,
    scale: int | None = None,
    depth_scale: float = 1000.0,
    tile: int | None = None,
    max_memory: int | str | None = None,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
    sampling: str = "auto",
    refine: bool = DEFAULT_REFINE,
    skipped: Sequence[tuple[str, str]] = (),
    model_kwargs: dict[str, Any] | None = None,
) -> FolderReport:
    """Upsample each (depth file, guide image) pair into ``out_dir/<depth stem><depth extension>``.

    A model is loaded once per scale and reused for every pair. A pair that cannot be done
    (unreadable file, wrong shapes, an output in the way without ``overwrite``, an output
    name an earlier pair took) is skipped and reported, the others go on; what was written
    stays written. ``skipped``: pairs the caller already set aside, reported with these;
    ``model_kwargs``: architecture arguments over the model card's.
    """
    from tqdm.auto import tqdm

    from densepac.inference import load_model_for_inference, resolve_device
    from densepac.io.depth import DEPTH_EXTENSIONS, check_depth_scale, read_depth, validate_depth, write_depth
    from densepac.io.files import check_output, check_output_folder
    from densepac.io.images import read_image
    from densepac.models.registry import require_task

    out_dir = check_output_folder(out_dir, "-o")
    check_depth_scale(depth_scale, "--depth-scale")
    require_task(model, "depth")
    dev = resolve_device(device)
    out_dir.mkdir(parents=True, exist_ok=True)
    loaded: dict[int, nn.Module] = {}
    written: list[Path] = []
    skipped = list(skipped)
    for depth_file, guide_file in tqdm(pairs, desc="upsample", disable=not progress or len(pairs) < 2 or None):
        depth_file, guide_file = Path(depth_file), Path(guide_file)
        target = out_dir / f"{depth_file.stem}{depth_file.suffix.lower()}"
        try:
            if target in written:
                raise InputError(f"{target.name} was written for an earlier pair; give the depth files distinct names")
            check_output(target, DEPTH_EXTENSIONS, "depth", overwrite)
            depth_lr = validate_depth(read_depth(depth_file, depth_scale), str(depth_file))
            rgb = read_image(guide_file)
            factor = resolve_scale(depth_lr.shape, rgb.shape[:2], scale)
            if factor not in loaded:
                name = model or (None if weights is not None else default_depth_model(factor))
                loaded[factor] = load_model_for_inference(name, weights, **(model_kwargs or {}))
            out = upsample_depth(
                loaded[factor], depth_lr, rgb, dev, tile, max_memory=max_memory, sampling=sampling, refine=refine
            )
            write_depth(target, out, depth_scale, overwrite=overwrite)
        except InputError as e:
            skipped.append((str(depth_file), str(e).splitlines()[0]))
            continue
        written.append(target)
    return FolderReport(written, skipped)


def upsample(
    depth: np.ndarray, rgb: np.ndarray, scale: int | None = None, model: str | nn.Module | None = None, **kwargs: Any
) -> np.ndarray:
    """One call, numpy in and out: ``depth`` (h, w) metres (0 = missing) guided by ``rgb`` (H, W, 3).

    ``model``: a registry name or a model (default: the shipped default for the scale, run as
    ``densepac upsample`` runs it: sampling ``auto``, refinement on). ``kwargs`` go to
    :func:`upsample_depth` (``sampling``, ``refine``, ``tile``, ``device``...). Returns (H, W) metres.
    To upsample many frames, build the model once (:func:`densepac.create_model`) and pass it.
    """
    from densepac.inference import load_model_for_inference
    from densepac.io.depth import validate_depth

    depth = validate_depth(depth, "depth")
    factor = resolve_scale(depth.shape, np.asarray(rgb).shape[:2], scale)
    net = model if isinstance(model, nn.Module) else load_model_for_inference(model or default_depth_model(factor))
    return upsample_depth(net, depth, rgb, **{"refine": DEFAULT_REFINE, **kwargs})
