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


def upsample_depth(model: nn.Module, depth_lr: np.ndarray, guide: np.ndarray,
                   device: torch.device | str = "cpu") -> np.ndarray:
    """Upsample one depth map.

    Args:
        model: a registry depth model.
        depth_lr: (h, w) float32 metres, 0 = missing.
        guide: (H, W, 3) float32 RGB in [0, 1], H = s*h, W = s*w.

    Returns:
        (H, W) float32 metres.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    d = torch.from_numpy(np.ascontiguousarray(depth_lr, dtype=np.float32))[None, None].to(device)
    g = torch.from_numpy(np.ascontiguousarray(guide, dtype=np.float32)).permute(2, 0, 1)[None].to(device)
    with torch.inference_mode():
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


def load_model_for_inference(name: str, weights=None) -> nn.Module:
    """A registry model with its shipped weights (or ``weights``); learned models need one of them."""
    from .models import create_model, list_weights

    pretrained = weights is None and name in list_weights()
    model = create_model(name, pretrained=pretrained, weights=weights)
    if not pretrained and weights is None and any(True for _ in model.parameters()):
        raise InputError(f"model {name!r} has no shipped weights; pass --weights FILE or train it with `densepac train`")
    return model
