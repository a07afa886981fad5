"""Running trained models on user data (numpy in, numpy out)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .errors import InputError
from .models.depth_base import infer_scale

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
        s = scale or max(1, round(H / h))
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
                   device: torch.device | str = "cpu", tile: int | None = None) -> np.ndarray:
    """Upsample one depth map, in tiles when it is large.

    Args:
        model: a registry depth model.
        depth_lr: (h, w) float32 metres, 0 = missing.
        guide: (H, W, 3) float32 RGB in [0, 1], H = s*h, W = s*w.
        tile: LR tile size; None picks :func:`auto_tile`, 0 disables tiling. Tiled and
            untiled results are the same (each tile carries ``model.tile_margin`` context).

    Returns:
        (H, W) float32 metres.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    d = torch.from_numpy(np.ascontiguousarray(depth_lr, dtype=np.float32))[None, None].to(device)
    g = torch.from_numpy(np.ascontiguousarray(guide, dtype=np.float32)).permute(2, 0, 1)[None].to(device)
    scale = infer_scale(tuple(d.shape[-2:]), tuple(g.shape[-2:]))
    tile = auto_tile(scale) if tile is None else tile
    with torch.inference_mode():
        if tile:
            out = tiled_upsample(model, d, g, tile=tile, margin=model.tile_margin)
        else:
            out = model(d, g)
    return out[0, 0].float().cpu().numpy()


def default_depth_model(scale: int) -> str:
    """The shipped depth model marked default for ``scale`` in its card, else joint bilateral."""
    from .models.weights import list_weights, shipped_card

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

    from .models import create_model, list_weights
    from .models.weights import WeightsCard

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


def segment_image(model: nn.Module, image: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """Labels (H, W) int64 of one RGB image (H, W, 3) float32 in [0, 1]."""
    device = torch.device(device)
    model = model.to(device).eval()
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None].to(device)
    with torch.inference_mode():
        return model(x).argmax(1)[0].cpu().numpy()


def tiled_upsample(model: nn.Module, depth_lr: torch.Tensor, guide: torch.Tensor, tile: int = 128,
                   margin: int = 16) -> torch.Tensor:
    """Run a depth model tile by tile so memory depends on ``tile``, not on the image.

    The model's global step (:meth:`DepthModel.prepare`) runs once; its local ``core`` runs
    on LR tiles of ``tile`` pixels plus ``margin`` pixels of context on each side, of which
    only the centre is kept. With a margin beyond the model's receptive field the result
    equals untiled inference.

    Args:
        depth_lr: (N, 1, h, w) metres; guide: (N, 3, h*s, w*s) RGB in [0, 1].
        tile, margin: in LR pixels.
    """
    if tile < 1 or margin < 0:
        raise InputError(f"tile={tile} and margin={margin} must be positive and non-negative")
    scale = model.check_inputs(depth_lr, guide)
    h, w = depth_lr.shape[-2:]
    if h <= tile and w <= tile:
        return model(depth_lr, guide)
    inputs, restore = model.prepare(depth_lr)
    out = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            a, b = max(0, y0 - margin), max(0, x0 - margin)
            c, d = min(h, y1 + margin), min(w, x1 + margin)
            part = model.core(*(t[..., a:c, b:d] for t in inputs),
                              guide[..., a * scale:c * scale, b * scale:d * scale])
            if out is None:
                out = part.new_empty(part.shape[0], part.shape[1], h * scale, w * scale)
            out[..., y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
                part[..., (y0 - a) * scale:(y1 - a) * scale, (x0 - b) * scale:(x1 - b) * scale]
    return restore(out)
