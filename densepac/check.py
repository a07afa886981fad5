"""Checks of user input shared by the library and the CLI (kornia's ``core/check`` habit).

Each check names the input, says what was expected and how to fix it, and raises
:class:`~densepac.errors.InputError`, which the CLI prints as one line with exit code 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from densepac.errors import InputError, InputTypeError


def check_model_task(model: nn.Module, task: str) -> None:
    """Refuse anything but a model of ``task`` (``"depth"`` or ``"segmentation"``)."""
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if getattr(model, "task", task) != task:
        raise InputTypeError(
            f"{getattr(model, 'model_name', type(model).__name__)!r} is a {model.task} model, "
            f"not a {task} model; see densepac.list_models(task={task!r})"
        )


def check_rgb_array(image: np.ndarray, what: str) -> np.ndarray:
    """float32 (H, W, 3) in [0, 1] from an RGB array (uint8, uint16 or float); anything else is refused."""
    if isinstance(image, torch.Tensor):
        raise InputTypeError(
            f"{what} must be a numpy (H, W, 3) array, got a torch.Tensor; call the model directly "
            "for tensors, or pass tensor.permute(1, 2, 0).numpy()"
        )
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(
            f"{what} must be an (H, W, 3) RGB array, got shape {arr.shape}; read files with "
            "densepac.io.images.read_image, which converts gray and RGBA images"
        )
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if arr.dtype.kind != "f":
        raise InputTypeError(f"{what} has dtype {arr.dtype}; give float32 RGB in [0, 1] (or uint8 / uint16)")
    return arr.astype(np.float32, copy=False)


def check_num_classes(
    num_classes: Any, *, minimum: int = 1, maximum: int | None = None, allow_none: bool = False
) -> int | None:
    """``num_classes`` as an int in ``[minimum, maximum]`` (or None when ``allow_none``)."""
    if num_classes is None and allow_none:
        return None
    too_big = maximum is not None and isinstance(num_classes, (int, np.integer)) and num_classes > maximum
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, (int, np.integer))
        or num_classes < minimum
        or too_big
    ):
        if maximum is not None:
            what = f"an integer in [{minimum}, {maximum}]"
        else:
            what = "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"
        raise InputError(
            f"num_classes={num_classes!r} must be {what} (21 for PASCAL VOC)" + (" or None" if allow_none else "")
        )
    return int(num_classes)


def check_int(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int (bools refused) in ``[minimum, maximum]``; ``name`` is quoted in the error."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name}={value!r} must be an integer")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if maximum is None:
            span = f"an integer >= {minimum}"
        elif minimum is None:
            span = f"an integer <= {maximum}"
        else:
            span = f"an integer in [{minimum}, {maximum}]"
        raise InputError(f"{name}={value!r} must be {span}")
    return int(value)


def check_choice(value: Any, choices: Sequence[str], name: str) -> str:
    """``value`` if it is one of ``choices``; the error lists them."""
    if value not in choices:
        raise InputError(f"{name}={value!r} is unknown; use one of {', '.join(map(str, choices))}")
    return value


def check_depth_array(depth: Any, name: str) -> np.ndarray:
    """A float32 copy of a 2-D real depth map ``(H, W)`` with non-finite values set to 0 (missing).

    What a caller then allows (negative values, no valid pixel) is its own policy.
    """
    arr = np.asarray(depth)
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(
            f"{name}: depth must be a 2-D (H, W) array, got shape {tuple(arr.shape)}; squeeze batch/channel axes first"
        )
    if arr.dtype.kind not in "uif":
        raise InputError(f"{name}: depth has dtype {arr.dtype}; give float32 metres")
    out = np.array(arr, dtype=np.float32, copy=True)
    out[~np.isfinite(out)] = 0.0
    return out


def check_scale(scale: Any) -> int:
    """An upsampling factor as an int >= 1 (an integral float is accepted)."""
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer, float, np.floating)):
        raise InputTypeError(f"scale={scale!r} is not a number; give a positive integer upsampling factor such as 8")
    if float(scale) != math.floor(float(scale)) or scale < 1:
        raise InputError(f"scale={scale!r} must be a positive integer such as 2, 4, 8 or 16")
    return int(scale)
