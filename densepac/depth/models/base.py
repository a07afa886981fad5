"""Shared behaviour of depth models: input checks and the scale between depth and guide."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from densepac.errors import InputError
from densepac.models.blocks import IMAGENET_MEAN, IMAGENET_STD
from densepac.ops.fill import fill_holes, valid_mask
from densepac.ops.guided import depth_range


def infer_scale(lr_size: tuple[int, int], hr_size: tuple[int, int]) -> int:
    """Integer factor ``s`` with ``hr == lr * s`` on both axes, else ValueError naming both shapes."""
    (h, w), (H, W) = lr_size, hr_size
    if h < 1 or w < 1 or H % h or W % w or H // h != W // w or H // h < 1:
        raise InputError(f"guide {H}x{W} is not an integer multiple of depth {h}x{w} on both axes")
    return H // h


class DepthModel(nn.Module):
    """Base of registry depth models: ``forward(depth_lr (N,1,h,w), guide (N,3,H,W)) -> (N,1,H,W)``.

    Depth is in metres, 0 or non-finite missing; guide RGB in [0, 1]. ``scales`` lists the
    factors a model supports (None: any integer factor).
    """

    task = "depth"
    scales: tuple[int, ...] | None = None
    #: LR pixels of context a tile needs so that tiled inference equals untiled (>= receptive field).
    tile_margin: int = 16

    def check_inputs(self, depth_lr: torch.Tensor, guide: torch.Tensor) -> int:
        """Validate shapes and return the upsampling factor."""
        if depth_lr.dim() != 4 or depth_lr.shape[1] != 1:
            raise InputError(f"depth_lr must be (N, 1, h, w), got {tuple(depth_lr.shape)}")
        if guide.dim() != 4 or guide.shape[1] != 3:
            raise InputError(f"guide must be (N, 3, H, W) RGB, got {tuple(guide.shape)}")
        if guide.shape[0] != depth_lr.shape[0]:
            raise InputError(f"batch sizes differ: depth {depth_lr.shape[0]}, guide {guide.shape[0]}")
        scale = infer_scale(tuple(depth_lr.shape[-2:]), tuple(guide.shape[-2:]))
        if self.scales is not None and scale not in self.scales:
            name = getattr(self, "model_name", type(self).__name__)
            family = name.rsplit("_x", 1)[0] if "_x" in name else None
            hint = f"use {family}_x{scale}" if family else "use a model made for this scale"
            raise InputError(
                f"{name} upsamples by {', '.join(f'x{s}' for s in self.scales)}, not x{scale}; {hint} "
                "(see `densepac models --task depth`)"
            )
        return scale

    def prepare(self, depth_lr: torch.Tensor) -> tuple[list[torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
        """Whole-image preprocessing before :meth:`core`: (LR-resolution inputs, output map).

        Tiled inference runs ``prepare`` once on the whole image and ``core`` per tile, so
        anything global (hole filling, depth normalization) belongs here. Default: none.
        """
        return [depth_lr], lambda y: y

    def core(self, *inputs: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """The local part: ``core(*prepare(depth_lr)[0], guide)``; default: ``forward``."""
        return self(*inputs, **kwargs)


#: Flip dims of a self-ensemble's members, in order: none, horizontal, vertical, both.
_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))
SELF_ENSEMBLE_SIZES = (1, 2, 4)


def check_self_ensemble(size: Any, name: str = "self_ensemble") -> int:
    """``size`` when it is 1, 2 or 4 (an int: 1.0 would slice nothing), else InputError naming ``name``."""
    if isinstance(size, bool) or not isinstance(size, int) or size not in SELF_ENSEMBLE_SIZES:
        raise InputError(f"{name}={size!r} must be one of {', '.join(map(str, SELF_ENSEMBLE_SIZES))}")
    return size


def flip_ensemble(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor, size: int = 4) -> torch.Tensor:
    """Mean of ``fn`` over ``size`` flips of its (N, C, H, W) inputs, each output flipped back.

    ``size``: 1 (``fn`` alone), 2 (+ left-right) or 4 (+ up-down and both). A geometric
    self-ensemble (Lim et al., EDSR, 2017): learned features are not flip-equivariant, and
    averaging the orientations averages their orientation-dependent errors, for ``size``
    forwards. Tiled inference still equals untiled when it does for ``fn``: a flip maps the
    stride grid of a tile whose size is a multiple of the model's strides onto itself.
    """
    check_self_ensemble(size, "self-ensemble size")
    out = fn(*inputs)
    for dims in _FLIPS[1:size]:
        out = out + fn(*(x.flip(dims) for x in inputs)).flip(dims)
    return out / size if size > 1 else out


def normalize_depth(depth_lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hole-fill and map each sample's valid range to [0, 1].

    Returns:
        (normalized filled depth, valid mask as float, offset, range), the last two (N,1,1,1).
    """
    valid = valid_mask(depth_lr)
    filled = fill_holes(depth_lr, valid)
    lo, hi = depth_range(depth_lr, valid)
    # A flat scene still gets a sensible unit: 10 cm or 5 % of its depth.
    rng = torch.maximum(hi - lo, torch.maximum(0.05 * hi, torch.full_like(hi, 0.1)))
    return (filled - lo) / rng, valid.to(depth_lr.dtype), lo, rng


class NormalizedDepthModel(DepthModel):
    """A learned depth model working in normalized units: metres in, metres out, any range.

    ``prepare`` hole-fills and maps the valid LR range to [0, 1] (:func:`normalize_depth`);
    subclasses implement ``core(dn, valid, guide)`` on normalized depth and its validity.
    ``rgb_mean``/``rgb_std`` standardise the guide (ImageNet statistics).
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("rgb_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, depth_lr: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        self.check_inputs(depth_lr, guide)
        inputs, restore = self.prepare(depth_lr)
        return restore(self.core(*inputs, guide))

    def prepare(self, depth_lr: torch.Tensor):
        dn, valid, lo, rng = normalize_depth(depth_lr)
        return [dn, valid], lambda y: y * rng + lo
