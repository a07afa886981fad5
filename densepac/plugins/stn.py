"""Spatial transformer (Jaderberg et al., NeurIPS 2015) in front of a segmentation model.

A :class:`SpatialTransformer` has a small localisation net that regresses a transform from
the image, a grid generator and a bilinear sampler. Three kinds of transform:

- ``affine``: the 6 entries of ``theta`` (N, 2, 3);
- ``attention``: isotropic scale and translation ``(s, tx, ty)``, ``theta = [[s, 0, tx], [0, s, ty]]``;
- ``tps``: a thin-plate spline through a regular ``grid_size x grid_size`` grid of control
  points; the net regresses each point's offset. The TPS pieces are kornia's
  (``get_tps_transform``, ``warp_points_tps``, used as its ``warp_image_tps`` composes them).

The last linear layer starts with zero weight and a bias equal to the identity transform, so
an untrained STN passes the image through unchanged (as in the paper).

Coordinates. Every transform maps a point of the *warped* (output) view to the point of the
*input* image that it samples, in the normalized ``grid_sample`` frame with
``align_corners=False``: ``x_norm = (2 x + 1) / W - 1``, so ``-1`` and ``1`` are the outer
edges of the border pixels. This is ``F.affine_grid``'s convention; kornia's ``warp_affine``
expects pixel-space matrices instead, so it is not used here.

Alignment for dense prediction. :class:`STNSegmentation` warps the image, runs the wrapped
model on the warped view, and warps the logits *back* to the input's pixel grid, so its output
lines up with the input pixel for pixel, like any segmentation model's:

- ``affine`` / ``attention``: the logits are resampled with the exact inverse of the 3x3
  homogeneous matrix (:func:`invert_affine`); warp followed by unwarp is the identity up to
  bilinear interpolation.
- ``tps``: a TPS has no closed-form inverse. The reverse TPS is fitted by swapping the control
  points (exact at the control points), then refined by ``invert_steps`` fixed-point steps
  ``p <- p + (q - T(p))``, which converge whenever the displacement field is a contraction
  (``|grad(T - id)| < 1``, true near the identity). Measured at 32 px, ``grid_size=4``, pixels
  more than 3 px from the border: control points moved by up to 0.05 of the half-width (0.8 px),
  the swapped fit alone is off by < 0.1 px and three steps bring it under 0.001 px; at 0.1
  (1.6 px moves) the fit is off by up to ~1.2 px and three steps leave ~0.03 px (the tests
  assert < 0.001 px and < 0.05 px). Iterates are clamped to ``[-3, 3]`` so a folding warp
  cannot overflow; beyond the image edge they only sample the fill.

Fill. Input pixels that the warped view does not cover were never seen by the model. They get
``fill="zeros"`` logits by default: a uniform class distribution (every class ties; ``argmax``
picks class 0, background on PASCAL VOC), no gradient into the model from pixels it did not
see, and a cross-entropy of ``log K`` there, which rewards the localisation net for keeping
the image in view. ``fill="border"`` copies the nearest predicted logits instead.
:meth:`SpatialTransformer.coverage` gives the covered fraction per pixel, to mask a loss.
Where the view reaches past the image, the image is sampled with ``image_padding="border"``
(replicated edges, the context the model is trained on, instead of an artificial black frame);
predictions there map outside the input and are discarded by the unwarp.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from kornia.geometry.grid import create_meshgrid
from kornia.geometry.transform import get_tps_transform, warp_points_tps
from torch import nn

from densepac.check import check_int
from densepac.errors import InputError
from densepac.segmentation.models.base import SegmentationModel

#: Transform kinds and how many parameters the localisation net regresses for each
#: (``tps``: 2 per control point).
KINDS = ("affine", "attention", "tps")
PADDING_MODES = ("zeros", "border", "reflection")
#: Bound on TPS inverse iterates (normalized units): points beyond the image edge sample the
#: padding whatever their exact value, and the bound keeps a diverging iteration finite.
_TPS_CLAMP = 3.0


# ----------------------------------------------------------------------------- functional


def _check_theta(theta: torch.Tensor) -> None:
    if theta.dim() != 3 or theta.shape[1:] != (2, 3):
        raise InputError(f"theta must be (N, 2, 3), got {tuple(theta.shape)}")


def _check_padding(padding_mode: str) -> None:
    if padding_mode not in PADDING_MODES:
        raise InputError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")


def _out_size(x: torch.Tensor, size: tuple[int, int] | None) -> tuple[int, int]:
    if x.dim() != 4:
        raise InputError(f"input must be (N, C, H, W), got {tuple(x.shape)}")
    return (int(x.shape[-2]), int(x.shape[-1])) if size is None else (int(size[0]), int(size[1]))


def affine_grid_sample(
    x: torch.Tensor,
    theta: torch.Tensor,
    size: tuple[int, int] | None = None,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Warp ``x`` (N, C, H, W) by ``theta`` (N, 2, 3) -> (N, C, *size) (default: x's size).

    Output pixel ``p`` (normalized, ``align_corners=False``) takes the value of ``x`` at
    ``theta @ [p, 1]``.
    """
    _check_theta(theta)
    _check_padding(padding_mode)
    h, w = _out_size(x, size)
    if theta.shape[0] != x.shape[0]:
        raise InputError(f"theta batch {theta.shape[0]} differs from input batch {x.shape[0]}")
    grid = F.affine_grid(theta.to(x.dtype), [x.shape[0], x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


def invert_affine(theta: torch.Tensor) -> torch.Tensor:
    """Inverse (N, 2, 3) of ``theta`` (N, 2, 3) read as the 3x3 matrix ``[[theta], [0, 0, 1]]``.

    Closed form (adjugate / determinant): differentiable, any dtype and device, no LAPACK.
    A singular ``theta`` gives non-finite entries.
    """
    _check_theta(theta)
    a, b, tx = theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2]
    c, d, ty = theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2]
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    row0 = torch.stack([ia, ib, -(ia * tx + ib * ty)], dim=-1)
    row1 = torch.stack([ic, id_, -(ic * tx + id_ * ty)], dim=-1)
    return torch.stack([row0, row1], dim=1)


def attention_theta(params: torch.Tensor) -> torch.Tensor:
    """``(s, tx, ty)`` (N, 3) -> ``theta`` (N, 2, 3) = ``[[s, 0, tx], [0, s, ty]]``."""
    if params.dim() != 2 or params.shape[1] != 3:
        raise InputError(f"attention params must be (N, 3) = (scale, tx, ty), got {tuple(params.shape)}")
    s, tx, ty = params.unbind(-1)
    zero = torch.zeros_like(s)
    return torch.stack([torch.stack([s, zero, tx], -1), torch.stack([zero, s, ty], -1)], dim=1)


def tps_control_points(
    grid_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Regular ``grid_size x grid_size`` control points (G*G, 2) as (x, y), spanning [-1, 1], row-major."""
    check_int(grid_size, "tps grid_size (control points per side)", minimum=2)
    lin = torch.linspace(-1.0, 1.0, grid_size, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    return torch.stack([xx, yy], dim=-1).reshape(-1, 2)


def _check_ctrl(ctrl_out: torch.Tensor, ctrl_in: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Broadcast a shared (M, 2) ``ctrl_out`` to ``ctrl_in``'s (N, M, 2)."""
    if ctrl_in.dim() != 3 or ctrl_in.shape[-1] != 2 or ctrl_in.shape[0] != batch:
        raise InputError(f"ctrl_in must be (N={batch}, M, 2) as (x, y), got {tuple(ctrl_in.shape)}")
    if ctrl_out.dim() == 2:
        ctrl_out = ctrl_out.unsqueeze(0).expand(batch, -1, -1)
    if ctrl_out.shape != ctrl_in.shape:
        raise InputError(f"ctrl_out {tuple(ctrl_out.shape)} must match ctrl_in {tuple(ctrl_in.shape)}")
    return ctrl_out, ctrl_in


def _pixel_grid(batch: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """Normalized pixel centres (N, H*W, 2), ``align_corners=False``, as (x, y)."""
    coords = create_meshgrid(
        h, w, normalized_coordinates=True, device=like.device, dtype=like.dtype, align_corners=False
    )
    return coords.reshape(1, h * w, 2).expand(batch, -1, -1)


def tps_grid(ctrl_out: torch.Tensor, ctrl_in: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Sampling grid (N, H, W, 2) of the TPS taking ``ctrl_out`` (M, 2) or (N, M, 2) to ``ctrl_in`` (N, M, 2).

    Both point sets are normalized (x, y). As kornia's ``warp_image_tps`` requires, the spline
    is fitted output -> input with the input points as kernel centres.
    """
    n = ctrl_in.shape[0]
    ctrl_out, ctrl_in = _check_ctrl(ctrl_out.to(ctrl_in.dtype), ctrl_in, n)
    kernel_w, affine_w = get_tps_transform(ctrl_out, ctrl_in)
    pts = warp_points_tps(_pixel_grid(n, size[0], size[1], ctrl_in), ctrl_in, kernel_w, affine_w)
    return pts.view(n, size[0], size[1], 2)


def tps_inverse_grid(
    ctrl_out: torch.Tensor, ctrl_in: torch.Tensor, size: tuple[int, int], steps: int = 3
) -> torch.Tensor:
    """Sampling grid (N, H, W, 2) of the approximate inverse of :func:`tps_grid`'s spline.

    Start from the reverse TPS (control points swapped; exact at the control points), then
    ``steps`` fixed-point steps ``p <- p + (q - T(p))`` towards ``T(p) = q`` (see the module
    docstring for the error it leaves).
    """
    n = ctrl_in.shape[0]
    ctrl_out, ctrl_in = _check_ctrl(ctrl_out.to(ctrl_in.dtype), ctrl_in, n)
    q = _pixel_grid(n, size[0], size[1], ctrl_in)
    kernel_r, affine_r = get_tps_transform(ctrl_in, ctrl_out)
    p = warp_points_tps(q, ctrl_out, kernel_r, affine_r)
    if steps > 0:
        kernel_w, affine_w = get_tps_transform(ctrl_out, ctrl_in)
        for _ in range(steps):
            p = (p + (q - warp_points_tps(p, ctrl_in, kernel_w, affine_w))).clamp(-_TPS_CLAMP, _TPS_CLAMP)
    return p.view(n, size[0], size[1], 2)


def tps_grid_sample(
    x: torch.Tensor,
    ctrl_out: torch.Tensor,
    ctrl_in: torch.Tensor,
    size: tuple[int, int] | None = None,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Warp ``x`` (N, C, H, W) by the TPS ``ctrl_out -> ctrl_in`` -> (N, C, *size).

    Same result as kornia's ``warp_image_tps`` at ``size=None`` (kornia fixes ``mode`` to bilinear).
    """
    _check_padding(padding_mode)
    grid = tps_grid(ctrl_out, ctrl_in.to(x.dtype), _out_size(x, size))
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


# ----------------------------------------------------------------------------- modules


def _num_params(kind: str, grid_size: int) -> int:
    return {"affine": 6, "attention": 3, "tps": 2 * grid_size * grid_size}[kind]


def _check_kind(kind: Any) -> str:
    if kind not in KINDS:
        raise InputError(f"unknown STN kind {kind!r}; use one of {', '.join(KINDS)}")
    return kind


class SpatialTransformer(nn.Module):
    """Localisation net + grid generator + bilinear sampler, identity at initialisation.

    Args:
        in_channels: channels of the localisation net's input.
        kind: ``"affine"``, ``"attention"`` or ``"tps"``.
        hidden: width of the localisation net.
        grid_size: control points per side (``tps`` only).
        pool_size: the localisation features are average-pooled to ``pool_size x pool_size``
            (not to 1x1: a fully global pool would discard where things are, which is what
            a translation has to be regressed from). Any input of >= ~16 px works.
        invert_steps: fixed-point refinements of the TPS inverse (``tps`` only).

    The transform of a batch is a tensor: ``theta`` (N, 2, 3) for ``affine`` / ``attention``,
    the input-frame positions (N, G*G, 2) of the regular control points for ``tps``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        kind: str = "affine",
        hidden: int = 32,
        grid_size: int = 4,
        pool_size: int = 4,
        invert_steps: int = 3,
    ) -> None:
        super().__init__()
        self.kind = _check_kind(kind)
        for name, value, low in (
            ("in_channels", in_channels, 1),
            ("hidden", hidden, 1),
            ("pool_size", pool_size, 1),
            ("invert_steps", invert_steps, 0),
        ):
            check_int(value, f"STN {name}", minimum=low)
        self.in_channels, self.hidden, self.pool_size = in_channels, hidden, pool_size
        self.grid_size, self.invert_steps = grid_size, invert_steps
        # Derived from grid_size, so not part of the state dict.
        self.register_buffer(
            "control_points", tps_control_points(grid_size) if kind == "tps" else torch.empty(0, 2), persistent=False
        )
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(pool_size),
            nn.Flatten(),
            nn.Linear(hidden * pool_size * pool_size, hidden),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(hidden, _num_params(kind, grid_size))
        self.reset_head()

    def reset_head(self) -> None:
        """Zero weight, identity bias: the transform starts as the identity for every image."""
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():
            self.head.bias.copy_(self.identity_params())

    def identity_params(self) -> torch.Tensor:
        """The regressed parameters (P,) of the identity transform."""
        if self.kind == "affine":
            return torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
        if self.kind == "attention":
            return torch.tensor([1.0, 0.0, 0.0])
        return torch.zeros(_num_params("tps", self.grid_size))  # control-point offsets

    def predict_transform(self, x: torch.Tensor) -> torch.Tensor:
        """Transform of each image of ``x`` (N, C, H, W); see the class docstring for its shape."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise InputError(f"STN input must be (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        params = self.head(self.features(x))
        if self.kind == "affine":
            return params.view(-1, 2, 3)
        if self.kind == "attention":
            return attention_theta(params)
        return self.control_points.to(params.dtype) + params.view(params.shape[0], -1, 2)

    def warp(
        self, x: torch.Tensor, transform: torch.Tensor, size: tuple[int, int] | None = None, padding_mode: str = "zeros"
    ) -> torch.Tensor:
        """Warped view (N, C, *size) of ``x`` (N, C, H, W): output pixel p samples x at T(p)."""
        if self.kind == "tps":
            return tps_grid_sample(x, self.control_points, transform, size, padding_mode=padding_mode)
        return affine_grid_sample(x, transform, size, padding_mode=padding_mode)

    def unwarp(
        self, y: torch.Tensor, transform: torch.Tensor, size: tuple[int, int] | None = None, padding_mode: str = "zeros"
    ) -> torch.Tensor:
        """Bring ``y`` (N, C, h, w), living in the warped view, back to the input grid (N, C, *size)."""
        if self.kind == "tps":
            _check_padding(padding_mode)
            grid = tps_inverse_grid(self.control_points, transform.to(y.dtype), _out_size(y, size), self.invert_steps)
            return F.grid_sample(y, grid, padding_mode=padding_mode, align_corners=False)
        return affine_grid_sample(y, invert_affine(transform), size, padding_mode=padding_mode)

    def coverage(self, transform: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(N, 1, H, W) in [0, 1]: how much of each input pixel the warped view covers."""
        n = transform.shape[0]
        ones = transform.new_ones(n, 1, int(size[0]), int(size[1]))
        return self.unwarp(ones, transform, size, padding_mode="zeros")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(warped (N, C, H, W), transform)`` of ``x`` (N, C, H, W)."""
        transform = self.predict_transform(x)
        return self.warp(x, transform), transform

    def extra_repr(self) -> str:
        tps = f", grid_size={self.grid_size}, invert_steps={self.invert_steps}" if self.kind == "tps" else ""
        return f"kind={self.kind!r}, in_channels={self.in_channels}, hidden={self.hidden}{tps}"


class STNSegmentation(SegmentationModel):
    """A segmentation model behind a spatial transformer; logits line up with the input pixels.

    ``forward(image (N, 3, H, W) RGB in [0, 1]) -> logits (N, K, H, W)``: the STN regresses a
    transform from the (ImageNet-normalized) image, the image is warped, ``model`` segments the
    warped view, and its logits are warped back (module docstring: alignment and fill).
    State dict: the wrapped model under ``model.``, the STN under ``stn.``.

    Args:
        model: any segmentation model (``task == "segmentation"``, ``num_classes``).
        kind, hidden, grid_size, pool_size, invert_steps: see :class:`SpatialTransformer`.
        image_padding: ``grid_sample`` padding of the image where the view leaves it.
        fill: ``"zeros"`` (uniform logits) or ``"border"`` for input pixels the view misses.
    """

    def __init__(
        self,
        model: nn.Module,
        kind: str = "affine",
        hidden: int = 32,
        grid_size: int = 4,
        pool_size: int = 4,
        invert_steps: int = 3,
        image_padding: str = "border",
        fill: str = "zeros",
    ) -> None:
        super().__init__()
        _check_segmentation(model)
        if image_padding not in PADDING_MODES:
            raise InputError(f"image_padding={image_padding!r}: use one of {', '.join(PADDING_MODES)}")
        if fill not in ("zeros", "border"):
            raise InputError(f"fill={fill!r}: use 'zeros' (uniform logits) or 'border' (nearest logits)")
        self.model = model
        self.stn = SpatialTransformer(3, kind, hidden, grid_size, pool_size, invert_steps)
        self.num_classes = int(model.num_classes)
        self.image_padding, self.fill = image_padding, fill

    @property
    def kind(self) -> str:
        return self.stn.kind

    def forward_with_transform(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits (N, K, H, W) aligned with image, transform)``; the transform as in :class:`SpatialTransformer`."""
        self.check_image(image)
        transform = self.stn.predict_transform(self.normalize(image))
        view = self.stn.warp(image, transform, padding_mode=self.image_padding)
        logits = self.model(view)
        return self.stn.unwarp(logits, transform, image.shape[-2:], padding_mode=self.fill), transform

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.forward_with_transform(image)[0]

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, image_padding={self.image_padding!r}, fill={self.fill!r}"


def _check_segmentation(model: Any) -> None:
    if (
        not isinstance(model, nn.Module)
        or getattr(model, "task", None) != "segmentation"
        or not hasattr(model, "num_classes")
    ):
        raise InputError(
            f"STN wraps segmentation models only, got {type(model).__name__}; "
            "pass a model from list_models(task='segmentation')"
        )


#: Keyword arguments :func:`wrap_stn` forwards to :class:`STNSegmentation`.
STN_OPTIONS = ("hidden", "grid_size", "pool_size", "invert_steps", "image_padding", "fill")


def wrap_stn(model: nn.Module, kind: str = "affine", **kwargs: Any) -> STNSegmentation:
    """Put a ``kind`` spatial transformer in front of segmentation ``model`` (``create_model(..., stn=kind)``)."""
    _check_kind(kind)
    _check_segmentation(model)
    unknown = sorted(set(kwargs) - set(STN_OPTIONS))
    if unknown:
        raise InputError(f"unknown STN option {unknown[0]!r}; use any of {', '.join(STN_OPTIONS)}")
    return STNSegmentation(model, kind, **kwargs)


__all__ = [
    "KINDS",
    "STNSegmentation",
    "SpatialTransformer",
    "affine_grid_sample",
    "attention_theta",
    "invert_affine",
    "tps_control_points",
    "tps_grid",
    "tps_grid_sample",
    "tps_inverse_grid",
    "wrap_stn",
]
