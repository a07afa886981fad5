"""Segmenting a user's image with a trained model (numpy in, numpy out), tiled and memory-bounded."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from densepac.check import check_model_task, check_rgb_array
from densepac.errors import InputError
from densepac.io.files import PathLike
from densepac.tiling import (
    CREEP_LIMIT,
    MemoryModel,
    Tile,
    budget_bytes,
    cached_memory_model,
    format_memory,
    largest_tensor_bytes,
    measure_memory,
    memory_in_use,
    release_free_memory,
    run_tiles,
    tiles_for_budget,
    warn_if_over,
)

_log = logging.getLogger(__name__)


def segment_image(
    model: nn.Module,
    image: np.ndarray,
    device: torch.device | str = "cpu",
    max_memory: int | str | None = None,
    tile: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Labels (H, W) int64 of one RGB image (H, W, 3) float32 in [0, 1] (uint8 / uint16 are scaled).

    Args:
        max_memory: a budget (bytes, or a string such as ``"2GiB"``) for the process's peak
            memory (resident set on CPU, allocated device memory on CUDA): the image is
            segmented whole when it fits, else in the largest tiles that fit
            (:func:`segmentation_tiles_for_budget`, :func:`tiled_segment`).
        tile: instead of ``max_memory``, a tile size in pixels (None or 0: whole image).
        progress: a tqdm bar over the tiles (on a terminal, with several tiles).

    Whole-image results are exactly those of ``model(image)``; tiled ones agree with them
    except near tile seams of models whose receptive field exceeds the tile margin.

    Raises InputError for an image that is not (H, W, 3), TypeError for a non-segmentation model.
    """
    check_model_task(model, "segmentation")
    image = check_rgb_array(image, "image")
    if tile is not None and max_memory is not None:
        raise InputError("give a tile size or a memory budget, not both (the budget picks the tiles)")
    device = torch.device(device)
    model = model.to(device).eval()
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None].to(device)
    with torch.inference_mode():
        if max_memory is not None:
            from densepac.ops.crf import CRFWrapped

            if isinstance(model, CRFWrapped):
                return segment_crf_in_stages(model, x, max_memory, progress)[0].cpu().numpy()
            tile = segmentation_tiles_for_budget(model, x, max_memory)
        if tile:
            return tiled_segment(model, x, tile, labels=True, progress=progress)[0].cpu().numpy()
        return model(x).argmax(1)[0].cpu().numpy()


#: Pixels of context a segmentation tile gets beyond any PAC-CRF's reach: three strides of 32.
#: FCN receptive fields span hundreds of pixels, so seams stay close, not exact (tested).
SEG_TILE_MARGIN = 96


#: Tile edges lie on this grid, the output stride of FCN-8s and of the smp encoders, so a
#: tile pools its pixels exactly as the whole image does.
SEG_TILE_ALIGN = 32


MIN_SEG_TILE = SEG_TILE_ALIGN

#: Bytes per pixel kept free for what follows the labels: the overlay's float copies of the
#: image and label colours, the palette and overlay PNGs (measured: an over-budget peak of
#: up to 5 % on 1500 px photos without it).
AFTER_BYTES_PER_PIXEL = 64


def segmentation_memory_model(model: nn.Module, device: torch.device | str = "cpu") -> MemoryModel:
    """Peak bytes of ``model(image)`` on a window, per pixel; measured once at 64 and 128 px squares."""
    device = torch.device(device)

    def measure() -> MemoryModel:
        with torch.inference_mode():
            return measure_memory(
                lambda h, w: (torch.rand(1, 3, h, w, device=device),),
                model,
                [(64, 64), (128, 128)],
                fixed=largest_tensor_bytes(model),
            )

    return cached_memory_model(model, ("segmentation", device.type), measure)


def crf_reach(model: nn.Module, size: tuple[int, int]) -> int:
    """Pixels of context the PAC-CRFs in ``model`` need on an image of ``size`` (0 without one).

    A CRF's reach is ``num_steps`` kernel radii at the dilation it uses for the whole image.
    """
    from densepac.ops.crf import PacCRF

    reach = [
        crf.num_steps * max(d * (k // 2) for (k, _), d in zip(crf.kernels, crf.dilations(size)))
        for crf in model.modules()
        if isinstance(crf, PacCRF)
    ]
    return max(reach, default=0)


def segmentation_tile_margin(model: nn.Module, size: tuple[int, int]) -> int:
    """:data:`SEG_TILE_MARGIN` plus the reach of every PAC-CRF in ``model`` (:func:`crf_reach`)."""
    return SEG_TILE_MARGIN + crf_reach(model, size)


def segmentation_tiles_for_budget(
    model: nn.Module, image: torch.Tensor, max_memory: int | str, extra: int = 0, later: int = 0
) -> tuple[int, int] | None:
    """Tile (th, tw) for :func:`tiled_segment` (labels) under ``max_memory``, or None: untiled fits.

    The planned window is run once and the tiles planned again if it needs more than
    estimated (:func:`~densepac.tiling.tiles_for_budget`). ``extra``: bytes of further
    whole-image buffers the caller fills while the tiles run; ``later``: bytes a later stage
    needs beyond what the process holds now (at least the overlay and files are kept free).
    """
    budget = budget_bytes(max_memory)
    warn_if_over(budget, image.device)
    n, _, h, w = image.shape
    memory = segmentation_memory_model(model, image.device)
    margin = segmentation_tile_margin(model, (h, w))
    return tiles_for_budget(
        (h, w),
        budget,
        memory_in_use(image.device),
        n * h * w * 8 + extra,
        memory,
        margin,
        SEG_TILE_ALIGN,
        # Kept tiles narrower than the margin would spend most of their time on context.
        max(MIN_SEG_TILE, margin),
        check=lambda wh, ww: _checked_window(model, torch.rand(n, 3, wh, ww, device=image.device), (h, w)),
        device=image.device,
        after=max(n * h * w * AFTER_BYTES_PER_PIXEL + extra, later),
        what=getattr(model, "model_name", type(model).__name__),
    )


def crf_memory_model(crf: nn.Module, device: torch.device | str = "cpu") -> MemoryModel:
    """Peak bytes of a PAC-CRF ``crf(logits, image)`` on a window, per pixel (64 and 128 px squares)."""
    device = torch.device(device)

    def measure() -> MemoryModel:
        with torch.inference_mode():
            return measure_memory(
                lambda h, w: (
                    torch.randn(1, crf.num_classes, h, w, device=device),
                    torch.rand(1, 3, h, w, device=device),
                ),
                crf,
                [(64, 64), (128, 128)],
                fixed=largest_tensor_bytes(crf),
            )

    return cached_memory_model(crf, ("crf", device.type), measure)


def segment_crf_in_stages(
    model: nn.Module, image: torch.Tensor, max_memory: int | str, progress: bool = False
) -> torch.Tensor:
    """Labels (N, H, W) of a :class:`~densepac.ops.crf.CRFWrapped` model under ``max_memory``, in two tiled stages.

    The network's logits are computed in tiles with :data:`SEG_TILE_MARGIN` pixels of
    context and stitched; then the PAC-CRF runs on them in tiles whose context is its own
    reach (:func:`crf_reach`, at the whole image's dilation), so its result equals the
    untiled CRF on those logits. One stage with the network's context would pay for the
    CRF, the costlier part, on every pixel of a much wider margin.
    """
    n, _, h, w = image.shape
    budget = budget_bytes(max_memory)
    after = n * h * w * AFTER_BYTES_PER_PIXEL
    whole = memory_in_use(image.device) + max(segmentation_memory_model(model, image.device)(h * w), after)
    if whole <= budget:
        _log.info(
            "memory budget %s: the whole %dx%d px image fits (estimated peak %s)",
            format_memory(budget),
            w,
            h,
            format_memory(whole),
        )
        return model(image).argmax(1)
    net, crf = model.model, model.crf
    logits_bytes = n * crf.num_classes * h * w * 4
    reach = crf_reach(model, (h, w))
    # The network's plan keeps room for the CRF stage after it: the logits, the labels and
    # the overlay, its smallest tile (at twice the estimate, which its own check may raise)
    # and the creep between tiles.
    window = min(h, max(MIN_SEG_TILE, reach) + 2 * reach) * min(w, max(MIN_SEG_TILE, reach) + 2 * reach)
    crf_stage = logits_bytes + n * h * w * (8 + AFTER_BYTES_PER_PIXEL) + 2 * crf_memory_model(crf, image.device)(window)
    tile = segmentation_tiles_for_budget(net, image, budget, extra=logits_bytes, later=crf_stage + CREEP_LIMIT)
    logits = net(image) if tile is None else tiled_segment(net, image, tile, progress=progress)
    release_free_memory()
    planned = tiles_for_budget(
        (h, w),
        budget,
        memory_in_use(image.device),
        n * h * w * 8,
        crf_memory_model(crf, image.device),
        reach,
        1,
        max(MIN_SEG_TILE, reach),
        check=lambda wh, ww: _checked_crf_window(model, logits[..., :wh, :ww], image[..., :wh, :ww], (h, w)),
        device=image.device,
        after=after,
        what=f"{getattr(model, 'model_name', 'the model')}'s PAC-CRF",
    )
    if planned is None:
        return crf(logits, image).argmax(1)

    def run(t: Tile) -> torch.Tensor:
        return crf(logits[(..., *t.window())], image[(..., *t.window())]).argmax(1)

    with whole_image_crf(model, (h, w)):
        return run_tiles(run, (h, w), planned, reach, progress=progress, desc="crf tiles")


def _checked_crf_window(
    model: nn.Module, logits: torch.Tensor, image: torch.Tensor, size: tuple[int, int]
) -> Callable[[], object]:
    def run() -> object:
        with whole_image_crf(model, size):
            return model.crf(logits, image).argmax(1)

    return run


def _checked_window(model: nn.Module, window: torch.Tensor, size: tuple[int, int]) -> Callable[[], object]:
    """Runs ``model`` on ``window`` as :func:`tiled_segment` runs a tile of an image of ``size``."""

    def run() -> object:
        with whole_image_crf(model, size):
            return model(window).argmax(1)

    return run


@contextmanager
def whole_image_crf(model: nn.Module, size: tuple[int, int]):
    """Inside ``with``, every PAC-CRF of ``model`` uses the dilations of an image of ``size``.

    A CRF with ``dilation_reference`` scales its dilation with the size of its input; a tile
    must use the whole image's, or the tiled CRF would differ from the untiled one. The
    CRF's own settings are restored on exit.
    """
    from densepac.ops.crf import PacCRF

    saved = []
    for crf in model.modules():
        if isinstance(crf, PacCRF) and crf.dilation_reference is not None:
            saved.append((crf, crf.kernels, crf.dilation_reference))
            crf.kernels = [(k, d) for (k, _), d in zip(crf.kernels, crf.dilations(size))]
            crf.dilation_reference = None
    try:
        yield model
    finally:
        for crf, kernels, reference in saved:
            crf.kernels, crf.dilation_reference = kernels, reference


def tiled_segment(
    model: nn.Module,
    image: torch.Tensor,
    tile: int | tuple[int, int],
    margin: int | None = None,
    labels: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """Segment ``image`` (N, 3, H, W) tile by tile: logits (N, K, H, W), or labels (N, H, W) int64.

    Tiles (kept ``tile`` pixels, on the :data:`SEG_TILE_ALIGN` grid) see ``margin`` pixels of
    context (default :func:`segmentation_tile_margin`); PAC-CRFs use the whole image's
    dilation (:func:`whole_image_crf`). With ``labels`` only each tile's argmax is kept, so
    the whole image's logits never exist. A tile as large as the image gives ``model(image)``.
    """
    h, w = image.shape[-2:]
    margin = segmentation_tile_margin(model, (h, w)) if margin is None else margin

    def run(t: Tile) -> torch.Tensor:
        out = model(image[(..., *t.window())])
        return out.argmax(1) if labels else out

    with whole_image_crf(model, (h, w)):
        return run_tiles(run, (h, w), tile, margin, SEG_TILE_ALIGN, progress=progress, desc="segment tiles")


@dataclass(frozen=True)
class SegmentReport:
    """What :func:`segment_files` wrote: one group of outputs per image, and the model used."""

    outputs: list[list[Path]]
    model: str


def default_segmentation_weights() -> Path | None:
    """The shipped segmentation weights marked default in their card (checked against its sha256), or None."""
    from densepac.models.registry import get_entry
    from densepac.models.weights import check_sha256, list_weights, shipped_card

    for name in list_weights():
        card = shipped_card(name)
        if card.default and get_entry(card.arch.removesuffix("+crf")).task == "segmentation":
            check_sha256(card.weights_path, card.sha256)
            return card.weights_path
    return None


def segment_files(
    images: Sequence[PathLike],
    output_dir: PathLike,
    *,
    model: str | None = None,
    weights: PathLike | None = None,
    crf: bool | None = None,
    model_kwargs: dict | None = None,
    cam: bool = False,
    cam_layer: str | None = None,
    max_memory: int | str | None = None,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
) -> SegmentReport:
    """Segment image files into ``output_dir``: ``NAME.png`` (labels, VOC palette) and ``NAME_overlay.png``.

    With neither ``model`` nor ``weights``, the shipped default segmentation weights are used.
    ``crf``: wrap the model in a PAC-CRF (True), run it without the CRF its weights carry
    (False), or as the weights' model card says (None). With ``cam``, also ``NAME_cam.png``: the
    model's attention (channel mean of ``cam_layer``, default the deepest feature layer) as a
    heatmap over the image. Every input is read and every output checked before the model is
    loaded, so a bad file fails at once; outputs are written atomically.
    """
    from tqdm.auto import tqdm

    from densepac.inference import load_model_for_inference, resolve_device
    from densepac.io.files import check_input_file, check_output_folder
    from densepac.io.images import IMAGE_EXTENSIONS, image_to_tensor, read_image, write_image, write_label
    from densepac.io.visualize import heatmap_overlay, overlay_mask
    from densepac.models.hub import is_hub_spec, resolve_weights, torchvision_arch_of
    from densepac.models.registry import require_task
    from densepac.ops.crf import CRFWrapped
    from densepac.segmentation.cam import attention_map
    from densepac.segmentation.pretrained import model_for_weights
    from densepac.segmentation.recipe import model_of_run

    if not images:
        raise InputError("no IMAGE given; pass one or more image files")
    if cam_layer is not None and not cam:
        raise InputError("--cam-layer is only used with --cam; add --cam or drop --cam-layer")
    for path in map(Path, images):  # a wrong kind of file is named before a missing one
        if path.suffix.lower() not in IMAGE_EXTENSIONS and not path.is_dir():
            raise InputError(f"{path}: not an image file ({', '.join(IMAGE_EXTENSIONS)})")
    paths = [check_input_file(p, "image", IMAGE_EXTENSIONS) for p in images]
    if len({p.stem for p in paths}) != len(paths):
        raise InputError("two IMAGEs share a file name; their outputs would overwrite each other")
    output_dir = check_output_folder(output_dir, "-o", parents=False)
    suffixes = ("", "_overlay") + (("_cam",) if cam else ())
    targets = [[output_dir / f"{p.stem}{s}.png" for s in suffixes] for p in paths]
    existing = [str(t) for group in targets for t in group if t.exists()]
    if existing and not overwrite:
        raise InputError(f"{existing[0]} already exists; pass --overwrite to replace outputs")
    for path in paths:  # every image decodes before any output is written
        read_image(path)
    dev = resolve_device(device)
    require_task(model, "segmentation")
    model_kwargs = dict(model_kwargs or {})
    if model is None and weights is None:
        weights = default_segmentation_weights()
    # torchvision's checkpoints, as files or enum names, name their architecture and class count;
    # a finetune run its whole model (hot swap, CRF). Files with a model card are read by the loader.
    found = None
    if weights is not None and is_hub_spec(weights):
        found = torchvision_arch_of(str(weights)) if model is None else None
    elif weights is not None and not Path(weights).with_suffix(".json").is_file():
        found = model_for_weights(weights) if model is None else model_of_run(resolve_weights(weights))
    if found is not None and model is not None and model.removesuffix("+crf") != found[0].removesuffix("+crf"):
        raise InputError(f"{weights} is a run of {found[0]}, not {model}; drop --model or pass that one")
    if found is not None:  # the run's own name: its CRF unless --no-crf
        model, model_kwargs = found[0], {**found[1], **model_kwargs}
    net = load_model_for_inference(model, weights, crf=bool(crf), **model_kwargs)
    if crf is False and isinstance(net, CRFWrapped):  # weights of a +crf model, run without their CRF
        name = net.model_name.removesuffix("+crf")
        net = net.model
        net.task, net.model_name = "segmentation", name
    if getattr(net, "task", None) != "segmentation":
        source = f"{weights}: " if weights is not None else ""
        raise InputError(
            f"{source}model {net.model_name!r} is a {net.task} model; "
            "pick one from `densepac models --task segmentation`"
        )
    if cam_layer is not None and cam_layer not in dict(net.named_modules()):
        raise InputError(
            f"--cam-layer {cam_layer!r} is not a layer of {net.model_name}; "
            "give a name from model.named_modules(), e.g. relu7 for FCN-8s"
        )
    output_dir.mkdir(exist_ok=True)
    quiet = not progress or not sys.stderr.isatty() or len(paths) == 1
    for path, group in zip(tqdm(paths, desc="segment", disable=quiet), targets):
        image = read_image(path)
        labels = segment_image(net, image, dev, max_memory=max_memory, progress=progress)
        pictures = [overlay_mask(image, labels)]
        if cam:
            heat = attention_map(net.to(dev).eval(), image_to_tensor(image).to(dev), cam_layer)
            pictures.append(heatmap_overlay(image, heat[0].cpu()))
        write_label(group[0], labels, overwrite=True)
        for target, picture in zip(group[1:], pictures):
            write_image(target, picture, overwrite=True)
    return SegmentReport(targets, net.model_name)
