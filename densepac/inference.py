"""Running trained models on user data (numpy in, numpy out)."""

from __future__ import annotations

import weakref
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from densepac.errors import InputError
from densepac.models.depth_base import infer_scale
from densepac.tiling import (MemoryModel, Tile, budget_bytes, largest_tensor_bytes, measure_memory, memory_in_use, run_tiles,
                     tiles_for_budget, warn_if_over)

MAX_SCALE = 64
FALLBACK_DEPTH_MODEL = "joint_bilateral"


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an unavailable CUDA request is an InputError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device} asked for, but no CUDA device is available; use --device cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None


def check_scale(lr_shape: tuple[int, int], guide_shape: tuple[int, int], scale: int | None) -> int:
    """The upsampling factor, inferred from the shapes or checked against ``scale``."""
    (h, w), (H, W) = lr_shape, guide_shape
    if scale is not None and not (2 <= scale <= MAX_SCALE):
        raise InputError(f"scale {scale} is out of range; use an integer factor between 2 and {MAX_SCALE}")
    try:
        inferred = infer_scale((h, w), (H, W))
    except ValueError:
        s = scale or max(2, round(H / h))
        raise InputError(f"guide {H}x{W} is not {s}x the depth {h}x{w}; expected a guide of {h * s}x{w * s} "
                         "(crop or resize the guide, or pass the depth that belongs to it)") from None
    if scale is not None and inferred != scale:
        raise InputError(f"guide {H}x{W} is {inferred}x the depth {h}x{w}, not --scale {scale}; "
                         "drop --scale or pass the matching files")
    if not (2 <= inferred <= MAX_SCALE):
        raise InputError(f"guide {H}x{W} and depth {h}x{w} give scale x{inferred}; "
                         f"densepac upsamples by factors 2 to {MAX_SCALE}")
    return inferred


def auto_tile(scale: int, max_hr_tile: int = 1024) -> int:
    """LR tile size whose HR tile is about ``max_hr_tile`` pixels wide (bounds memory)."""
    return max(8, max_hr_tile // scale)


def upsample_depth(model: nn.Module, depth_lr: np.ndarray, guide: np.ndarray,
                   device: torch.device | str = "cpu", tile: int | None = None,
                   max_memory: int | str | None = None, progress: bool = False) -> np.ndarray:
    """Upsample one depth map, in tiles when it is large.

    Args:
        model: a registry depth model.
        depth_lr: (h, w) float32 metres, 0 = missing.
        guide: (H, W, 3) float32 RGB in [0, 1], H = s*h, W = s*w.
        tile: LR tile size; None picks :func:`auto_tile`, 0 disables tiling. Tiled and
            untiled results are the same (each tile carries ``model.tile_margin`` context).
        max_memory: instead of ``tile``, a budget (bytes, or a string such as ``"2GiB"``, see
            :func:`~densepac.tiling.parse_memory`) for the process's peak memory (resident
            set on CPU, allocated device memory on CUDA): the largest tiles that fit, no
            tiling when the whole image does (:func:`depth_tiles_for_budget`).
        progress: a tqdm bar over the tiles (on a terminal, with several tiles).

    Returns:
        (H, W) float32 metres.

    Raises:
        InputError: depth not 2-D, negative or all missing; guide not (H, W, 3) (uint8 and
            uint16 guides are scaled to [0, 1]) or not an integer multiple of the depth.
        TypeError: ``model`` is not a depth model, or an argument is not a numpy array.
    """
    depth_lr, guide = _check_upsample_inputs(model, depth_lr, guide)
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
        if tile:
            out = tiled_upsample(model, d, g, tile=tile, margin=model.tile_margin, progress=progress)
        else:
            out = model(d, g)
    return out[0, 0].float().cpu().numpy()


def default_depth_model(scale: int) -> str:
    """The shipped depth model marked default for ``scale`` in its card, else joint bilateral."""
    from densepac.models.weights import list_weights, shipped_card

    for name in list_weights():
        card = shipped_card(name)
        if card.default and card.kwargs.get("scale") == scale:
            return name
    return FALLBACK_DEPTH_MODEL


def load_model_for_inference(name: str | None, weights=None, **kwargs) -> nn.Module:
    """A registry model with its shipped weights, or with ``weights``.

    A weights file with its model card beside it (``NAME.json``, as ``densepac train
    --export`` writes) supplies the architecture arguments, and the model name when
    ``name`` is None. A learned model without any weights is refused.
    """
    from pathlib import Path

    from densepac.models import create_model, list_weights
    from densepac.models.weights import WeightsCard

    card_path = Path(weights).with_suffix(".json") if weights is not None else None
    if card_path is not None and card_path.is_file():
        card = WeightsCard.from_json(card_path)
        name = name or card.arch
        if name.removesuffix("+crf") == card.arch.removesuffix("+crf"):
            kwargs = {**card.kwargs, **kwargs}
    if name is None:
        raise InputError("no model given; pass --model NAME (see `densepac models`)")
    pretrained = weights is None and name in list_weights()
    model = create_model(name, pretrained=pretrained, weights=weights, **kwargs)
    if not pretrained and weights is None and any(True for _ in model.parameters()):
        raise InputError(f"model {name!r} has no shipped weights; pass --weights FILE or train it with `densepac train`")
    return model


def segment_image(model: nn.Module, image: np.ndarray, device: torch.device | str = "cpu",
                  max_memory: int | str | None = None, tile: int | None = None,
                  progress: bool = False) -> np.ndarray:
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
    image = _check_image(model, image, "segmentation", "image")
    if tile is not None and max_memory is not None:
        raise InputError("give a tile size or a memory budget, not both (the budget picks the tiles)")
    device = torch.device(device)
    model = model.to(device).eval()
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None].to(device)
    with torch.inference_mode():
        if max_memory is not None:
            tile = segmentation_tiles_for_budget(model, x, max_memory)
        if tile:
            return tiled_segment(model, x, tile, labels=True, progress=progress)[0].cpu().numpy()
        return model(x).argmax(1)[0].cpu().numpy()


def tiled_upsample(model: nn.Module, depth_lr: torch.Tensor, guide: torch.Tensor,
                   tile: int | tuple[int, int] = 128, margin: int = 16, progress: bool = False) -> torch.Tensor:
    """Run a depth model tile by tile so memory depends on ``tile``, not on the image.

    The model's global step (:meth:`DepthModel.prepare`) runs once; its local ``core`` runs
    on LR tiles of ``tile`` pixels plus ``margin`` pixels of context on each side, of which
    only the centre is kept (:func:`densepac.tiling.run_tiles`). With a margin beyond the
    model's receptive field the result equals untiled inference.

    Args:
        depth_lr: (N, 1, h, w) metres; guide: (N, 3, h*s, w*s) RGB in [0, 1].
        tile: LR tile size, or (th, tw); margin: in LR pixels.
    """
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    if th < 1 or tw < 1 or margin < 0:
        raise InputError(f"tile={tile} and margin={margin} must be positive and non-negative")
    scale = model.check_inputs(depth_lr, guide)
    h, w = depth_lr.shape[-2:]
    if h <= th and w <= tw:
        return model(depth_lr, guide)
    inputs, restore = model.prepare(depth_lr)

    def run(t: Tile) -> torch.Tensor:
        return model.core(*(x[(..., *t.window())] for x in inputs), guide[(..., *t.window(scale))])

    return restore(run_tiles(run, (h, w), (th, tw), margin, scale=scale, progress=progress, desc="upsample tiles"))


#: Pixels of context a segmentation tile gets beyond any PAC-CRF's reach: three strides of 32.
#: FCN receptive fields span hundreds of pixels, so seams stay close, not exact (tested).
SEG_TILE_MARGIN = 96
#: Tile edges lie on this grid, the output stride of FCN-8s and of the smp encoders, so a
#: tile pools its pixels exactly as the whole image does.
SEG_TILE_ALIGN = 32
#: Smallest kept tile a memory budget may ask for (LR pixels for depth, pixels for segmentation).
MIN_DEPTH_TILE = 8
MIN_SEG_TILE = SEG_TILE_ALIGN

# Memory models measured per model object (activations do not depend on the weights' values).
_MEMORY_MODELS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def _memory_model(model: nn.Module, key: tuple, measure) -> MemoryModel:
    cached = _MEMORY_MODELS.setdefault(model, {})
    if key not in cached:
        cached[key] = measure()
    return cached[key]


def depth_memory_model(model: nn.Module, scale: int, device: torch.device | str = "cpu") -> MemoryModel:
    """Peak bytes of ``model.core`` on an LR window, per LR pixel (see :mod:`densepac.tiling`).

    Measured once per model, scale and device on windows of about 64 and 128 HR pixels.
    """
    device = torch.device(device)
    side = max(4, 64 // scale)

    def make_inputs(h: int, w: int) -> tuple:
        inputs, _ = model.prepare(torch.rand(1, 1, h, w, device=device) + 1)
        return (*inputs, torch.rand(1, 3, h * scale, w * scale, device=device))

    def measure() -> MemoryModel:
        with torch.inference_mode():
            return measure_memory(make_inputs, model.core, [(side, side), (2 * side, 2 * side)],
                                  fixed=largest_tensor_bytes(model))

    return _memory_model(model, ("depth", scale, device.type), measure)


def segmentation_memory_model(model: nn.Module, device: torch.device | str = "cpu") -> MemoryModel:
    """Peak bytes of ``model(image)`` on a window, per pixel; measured once at 64 and 128 px squares."""
    device = torch.device(device)

    def measure() -> MemoryModel:
        with torch.inference_mode():
            return measure_memory(lambda h, w: (torch.rand(1, 3, h, w, device=device),), model,
                                  [(64, 64), (128, 128)], fixed=largest_tensor_bytes(model))

    return _memory_model(model, ("segmentation", device.type), measure)


def _budget(max_memory: int | str) -> int:
    try:
        return budget_bytes(max_memory)
    except ValueError as e:
        raise InputError(str(e)) from None


def depth_tiles_for_budget(model: nn.Module, depth_lr: torch.Tensor, guide: torch.Tensor,
                           max_memory: int | str) -> tuple[int, int] | None:
    """LR tile (th, tw) for :func:`tiled_upsample` under ``max_memory``, or None: untiled fits.

    Raises InputError when even the smallest tile does not fit (the message gives the budget
    that would).
    """
    budget = _budget(max_memory)
    warn_if_over(budget, depth_lr.device)
    scale = model.check_inputs(depth_lr, guide)
    n, _, h, w = depth_lr.shape
    memory = depth_memory_model(model, scale, depth_lr.device)
    # Stitching holds the HR output and its restored copy; prepare() adds a few LR maps.
    outputs = n * h * w * 4 * (2 * scale * scale + 8)
    return tiles_for_budget((h, w), budget, memory_in_use(depth_lr.device), outputs, memory, model.tile_margin,
                            min_tile=MIN_DEPTH_TILE, what=getattr(model, "model_name", type(model).__name__),
                            unit=f"LR px (x{scale})")


def segmentation_tile_margin(model: nn.Module, size: tuple[int, int]) -> int:
    """:data:`SEG_TILE_MARGIN` plus the reach of every PAC-CRF in ``model`` on an image of ``size``.

    A CRF's reach is ``num_steps`` kernel radii at the dilation it uses for the whole image.
    """
    from densepac.ops.crf import PacCRF

    reach = [crf.num_steps * max(d * (k // 2) for (k, _), d in zip(crf.kernels, crf.dilations(size)))
             for crf in model.modules() if isinstance(crf, PacCRF)]
    return SEG_TILE_MARGIN + max(reach, default=0)


def segmentation_tiles_for_budget(model: nn.Module, image: torch.Tensor,
                                  max_memory: int | str) -> tuple[int, int] | None:
    """Tile (th, tw) for :func:`tiled_segment` (labels) under ``max_memory``, or None: untiled fits."""
    budget = _budget(max_memory)
    warn_if_over(budget, image.device)
    n, _, h, w = image.shape
    memory = segmentation_memory_model(model, image.device)
    return tiles_for_budget((h, w), budget, memory_in_use(image.device), n * h * w * 8, memory,
                            segmentation_tile_margin(model, (h, w)), SEG_TILE_ALIGN, MIN_SEG_TILE,
                            what=getattr(model, "model_name", type(model).__name__))


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


def tiled_segment(model: nn.Module, image: torch.Tensor, tile: int | tuple[int, int], margin: int | None = None,
                  labels: bool = False, progress: bool = False) -> torch.Tensor:
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


def _check_task(model: nn.Module, task: str) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if getattr(model, "task", task) != task:
        raise TypeError(f"{getattr(model, 'model_name', type(model).__name__)!r} is a {model.task} model, "
                        f"not a {task} model; see densepac.list_models(task={task!r})")


def _check_image(model: nn.Module, image: np.ndarray, task: str, what: str) -> np.ndarray:
    """float32 (H, W, 3) in [0, 1] from an RGB array (uint8, uint16 or float); anything else is refused."""
    _check_task(model, task)
    if isinstance(image, torch.Tensor):
        raise TypeError(f"{what} must be a numpy (H, W, 3) array, got a torch.Tensor; call the model directly "
                        "for tensors, or pass tensor.permute(1, 2, 0).numpy()")
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(f"{what} must be an (H, W, 3) RGB array, got shape {arr.shape}; read files with "
                         "densepac.data.io.read_image, which converts gray and RGBA images")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if arr.dtype.kind != "f":
        raise TypeError(f"{what} has dtype {arr.dtype}; give float32 RGB in [0, 1] (or uint8 / uint16)")
    return arr.astype(np.float32, copy=False)


def _check_upsample_inputs(model: nn.Module, depth_lr: np.ndarray, guide: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated (depth (h, w) float32 metres, guide (H, W, 3) float32) for :func:`upsample_depth`."""
    from densepac.data.io import validate_depth

    guide = _check_image(model, guide, "depth", "guide")
    if isinstance(depth_lr, torch.Tensor):
        raise TypeError("depth_lr must be a numpy (h, w) array, got a torch.Tensor; pass tensor.numpy()")
    depth_lr = validate_depth(depth_lr, "depth_lr")
    try:
        infer_scale(depth_lr.shape, guide.shape[:2])
    except ValueError as e:
        raise InputError(f"{e}; crop or resize the guide to an integer multiple of the depth") from None
    return depth_lr, guide
