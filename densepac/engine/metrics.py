"""Dataset-level metrics for depth upsampling and semantic segmentation.

Every accumulator follows the same small protocol (:class:`MetricAccumulator`): ``update``
per batch, ``all_reduce`` once per evaluation under DDP (sums over ranks), ``compute`` for
the final values and ``reset``. State is kept as sums in one tensor so a single collective
reduces it and the result does not depend on how the data was split over batches or ranks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F

from densepac.engine.distributed import all_reduce_sum
from densepac.errors import InputError

__all__ = [
    "MetricAccumulator",
    "valid_depth_mask",
    "depth_metrics",
    "DepthMetrics",
    "ConfusionMatrix",
    "boundary_band",
    "SegmentationMetrics",
]

Crop = int | Sequence[int]

# Order of the sums kept by DepthMetrics; one float64 vector so all_reduce is one call.
_DEPTH_FIELDS = (
    "n_pixels",
    "sum_sq",
    "sum_abs",
    "sum_absrel",
    "n_delta1",
    "n_delta2",
    "n_delta3",
    "sum_image_rmse",
    "n_images",
)


class MetricAccumulator(Protocol):
    """What the trainer needs from a metric: accumulate, reduce over ranks, report."""

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None: ...

    def all_reduce(self) -> None: ...

    def compute(self) -> dict[str, float | list[float]]: ...

    def reset(self) -> None: ...


def _crop_box(crop: Crop) -> tuple[int, int, int, int]:
    """Return (top, bottom, left, right) pixel margins from an int or a 4-sequence."""
    if isinstance(crop, int):
        box = (crop, crop, crop, crop)
    else:
        box = tuple(int(c) for c in crop)
        if len(box) != 4:
            raise InputError(f"crop={crop!r} has {len(box)} values; give one int or (top, bottom, left, right)")
    if any(c < 0 for c in box):
        raise InputError(f"crop={crop!r} has a negative margin; use margins >= 0 pixels")
    return box  # type: ignore[return-value]


def _as_nhw(x: torch.Tensor, name: str) -> torch.Tensor:
    """View a depth map given as (H,W), (N,H,W) or (N,1,H,W) as (N,H,W)."""
    if x.dim() == 2:
        return x.unsqueeze(0)
    if x.dim() == 3:
        return x
    if x.dim() == 4 and x.shape[1] == 1:
        return x[:, 0]
    raise InputError(f"{name} has shape {tuple(x.shape)}; give a depth map as (H,W), (N,H,W) or (N,1,H,W)")


def valid_depth_mask(
    target: torch.Tensor,
    crop: Crop = 0,
    min_depth: float | None = None,
    max_depth: float | None = None,
) -> torch.Tensor:
    """Boolean mask of pixels that count: finite, > 0, inside the crop and depth range.

    ``target`` is (..., H, W) in metres; ``crop`` drops that many pixels at each border
    (an int, or (top, bottom, left, right)). The mask has ``target``'s shape.
    """
    mask = torch.isfinite(target) & (target > 0)
    if min_depth is not None:
        mask &= target >= min_depth
    if max_depth is not None:
        mask &= target <= max_depth
    top, bottom, left, right = _crop_box(crop)
    if top or bottom or left or right:
        h, w = target.shape[-2:]
        if top + bottom >= h or left + right >= w:
            raise InputError(f"crop={crop!r} removes the whole {h}x{w} image; use a smaller crop")
        inside = torch.zeros_like(mask)
        inside[..., top : h - bottom, left : w - right] = True
        mask &= inside
    return mask


class DepthMetrics:
    """Accumulates depth errors over a data set, on valid pixels only.

    Valid pixels: target finite and > 0, inside ``crop`` and, when given, inside
    [``min_depth``, ``max_depth``]; when a range is given predictions are also clamped to
    it (the usual NYU v2 protocol). Units are those of the inputs (metres).

    ``compute()`` returns:

    - ``rmse``: sqrt of the mean squared error over *all valid pixels of the set* (pixels
      pooled; large images weigh more).
    - ``rmse_per_image``: the RMSE of each image, averaged over images that have at least
      one valid pixel (what many depth papers report as "RMSE").
    - ``mae``, ``absrel`` (mean |pred - gt| / gt): pooled over valid pixels.
    - ``delta1``/``delta2``/``delta3``: fraction of valid pixels with
      max(pred/gt, gt/pred) < 1.25, 1.25**2, 1.25**3; a prediction <= 0 never passes.
    - ``num_pixels``, ``num_images``: how many valid pixels / images were counted.

    Values are NaN when no valid pixel was seen.
    """

    def __init__(
        self,
        crop: Crop = 0,
        min_depth: float | None = None,
        max_depth: float | None = None,
    ) -> None:
        _crop_box(crop)  # validate early, not at the first batch
        if min_depth is not None and max_depth is not None and min_depth >= max_depth:
            raise InputError(f"min_depth={min_depth} >= max_depth={max_depth}; give min_depth < max_depth")
        self.crop = crop
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.state = torch.zeros(len(_DEPTH_FIELDS), dtype=torch.float64)

    def reset(self) -> None:
        self.state = torch.zeros(len(_DEPTH_FIELDS), dtype=torch.float64)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` and ``target`` of equal shape (H,W), (N,H,W) or (N,1,H,W)."""
        pred = _as_nhw(pred, "pred")
        target = _as_nhw(target, "target")
        if pred.shape != target.shape:
            raise InputError(
                f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}; "
                "resize the prediction to the ground-truth resolution first"
            )
        mask = valid_depth_mask(target, self.crop, self.min_depth, self.max_depth)
        # float64: sums over millions of pixels lose digits in float32.
        p = pred.detach().to(torch.float64)
        t = torch.where(mask, target.detach().to(torch.float64), 1.0)
        if self.min_depth is not None or self.max_depth is not None:
            p = p.clamp(self.min_depth, self.max_depth)
        err = torch.where(mask, p - t, 0.0)
        abs_err = err.abs()
        p_safe = torch.where(mask, p, 1.0)
        ratio = torch.maximum(p_safe / t, t / p_safe)
        ratio = torch.where(p_safe > 0, ratio, math.inf)

        n_per_image = mask.sum(dim=(1, 2)).to(torch.float64)
        sq_per_image = (err * err).sum(dim=(1, 2))
        has_pixels = n_per_image > 0
        image_rmse = torch.sqrt(sq_per_image / n_per_image.clamp(min=1.0))
        batch = torch.stack(
            [
                n_per_image.sum(),
                sq_per_image.sum(),
                abs_err.sum(),
                (abs_err / t).sum(),
                (mask & (ratio < 1.25)).sum().to(torch.float64),
                (mask & (ratio < 1.25**2)).sum().to(torch.float64),
                (mask & (ratio < 1.25**3)).sum().to(torch.float64),
                torch.where(has_pixels, image_rmse, 0.0).sum(),
                has_pixels.sum().to(torch.float64),
            ]
        )
        self.state = self.state.to(batch.device) + batch

    def all_reduce(self) -> None:
        """Sum the state over DDP ranks (no-op in a single process)."""
        # clone: the sums may be inference tensors (updated under torch.inference_mode),
        # which refuse in-place writes outside it.
        self.state = all_reduce_sum(self.state.clone())

    def compute(self) -> dict[str, float | list[float]]:
        s = dict(zip(_DEPTH_FIELDS, self.state.cpu().tolist()))
        n, n_img = s["n_pixels"], s["n_images"]
        nan = float("nan")
        return {
            "rmse": math.sqrt(s["sum_sq"] / n) if n else nan,
            "rmse_per_image": s["sum_image_rmse"] / n_img if n_img else nan,
            "mae": s["sum_abs"] / n if n else nan,
            "absrel": s["sum_absrel"] / n if n else nan,
            "delta1": s["n_delta1"] / n if n else nan,
            "delta2": s["n_delta2"] / n if n else nan,
            "delta3": s["n_delta3"] / n if n else nan,
            "num_pixels": int(n),
            "num_images": int(n_img),
        }


def depth_metrics(
    pred: torch.Tensor,
    target: torch.Tensor,
    crop: Crop = 0,
    min_depth: float | None = None,
    max_depth: float | None = None,
) -> dict[str, float | list[float]]:
    """Depth metrics of one batch; same keys and meaning as :meth:`DepthMetrics.compute`."""
    acc = DepthMetrics(crop=crop, min_depth=min_depth, max_depth=max_depth)
    acc.update(pred, target)
    return acc.compute()


class ConfusionMatrix:
    """Confusion matrix over ``num_classes`` labels; rows = ground truth, columns = prediction.

    Pixels whose label is ``ignore_index`` (or outside an optional mask) are skipped.
    ``compute()`` gives ``miou`` (mean over classes present in the ground truth or the
    prediction), ``iou`` (per class, NaN for a class never seen), ``pixel_acc`` and
    ``mean_class_acc`` (mean recall over classes present in the ground truth).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise InputError(f"num_classes={num_classes}; give at least 1 class")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        self.matrix = torch.zeros_like(self.matrix)

    @torch.no_grad()
    def update(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> None:
        """Add a batch.

        ``pred``: labels of ``target``'s shape, or logits with one extra class dimension
        at dim 1 ((N,K,H,W) for a (N,H,W) target). ``target``: int labels. ``mask``: bool
        of ``target``'s shape; only pixels where it is True are counted.
        """
        k = self.num_classes
        if pred.dim() == target.dim() + 1:
            if pred.shape[1] != k:
                raise InputError(
                    f"logits have {pred.shape[1]} channels but num_classes={k}; "
                    "build the metric with the model's number of classes"
                )
            pred = pred.argmax(dim=1)
        if pred.shape != target.shape:
            raise InputError(
                f"prediction shape {tuple(pred.shape)} != label shape {tuple(target.shape)}; "
                "resize the logits to the label resolution first"
            )
        valid = target != self.ignore_index
        if mask is not None:
            if mask.shape != target.shape:
                raise InputError(
                    f"mask shape {tuple(mask.shape)} != label shape {tuple(target.shape)}; "
                    "give one mask value per label pixel"
                )
            valid &= mask.to(torch.bool)
        t = target[valid].to(torch.int64)
        p = pred[valid].to(torch.int64)
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= k):
            raise InputError(
                f"labels hold values outside [0, {k}) other than ignore_index="
                f"{self.ignore_index}; remap them or raise num_classes"
            )
        if p.numel() and (int(p.min()) < 0 or int(p.max()) >= k):
            raise InputError(f"predicted labels fall outside [0, {k}); pass logits or labels of the {k}-class model")
        counts = torch.bincount(t * k + p, minlength=k * k).reshape(k, k)
        self.matrix = self.matrix.to(counts.device) + counts

    def all_reduce(self) -> None:
        """Sum the matrix over DDP ranks (no-op in a single process)."""
        self.matrix = all_reduce_sum(self.matrix.clone())  # see DepthMetrics.all_reduce

    def compute(self) -> dict[str, float | list[float]]:
        m = self.matrix.cpu().to(torch.float64)
        tp = m.diag()
        gt = m.sum(dim=1)
        predicted = m.sum(dim=0)
        union = gt + predicted - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.nan)
        recall = torch.where(gt > 0, tp / gt.clamp(min=1), torch.nan)
        total = m.sum()
        return {
            "miou": _nanmean(iou),
            "iou": iou.tolist(),
            "pixel_acc": float(tp.sum() / total) if total > 0 else float("nan"),
            "mean_class_acc": _nanmean(recall),
        }


def _nanmean(x: torch.Tensor) -> float:
    finite = x[~torch.isnan(x)]
    return float(finite.mean()) if finite.numel() else float("nan")


def boundary_band(label: torch.Tensor, width: int) -> torch.Tensor:
    """Bool mask of pixels within ``width`` px (Chebyshev distance) of a label change.

    ``label``: (H,W) or (N,H,W) integer map. A pixel is in the band when its
    (2*width+1)^2 window holds two different labels; both sides of an edge are marked.
    The ignore label counts as a region like any other, so pixels next to void borders
    (as in PASCAL VOC) are in the band; the image border itself is not an edge.
    """
    if width < 1:
        raise InputError(f"boundary width={width}; give a band width of at least 1 pixel")
    if label.dim() not in (2, 3):
        raise InputError(f"label has shape {tuple(label.shape)}; give a label map as (H,W) or (N,H,W)")
    x = label.reshape(-1, 1, *label.shape[-2:]).to(torch.float32)  # labels < 2**24: exact
    k = 2 * width + 1
    # max_pool pads with -inf, so windows clipped at the border see only real pixels.
    high = F.max_pool2d(x, k, stride=1, padding=width)
    low = -F.max_pool2d(-x, k, stride=1, padding=width)
    return (high != low).reshape(label.shape)


class SegmentationMetrics:
    """mIoU and friends over the whole image, plus mIoU inside a band around label edges.

    ``compute()`` has the :class:`ConfusionMatrix` keys, and, when ``boundary_width`` is
    set, ``boundary_miou``: the mIoU counted only on pixels within ``boundary_width`` px
    of a ground-truth label edge (see :func:`boundary_band`).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, boundary_width: int | None = 3) -> None:
        if boundary_width is not None and boundary_width < 1:
            raise InputError(f"boundary_width={boundary_width}; give >= 1 pixel, or None to skip it")
        self.full = ConfusionMatrix(num_classes, ignore_index)
        self.boundary = ConfusionMatrix(num_classes, ignore_index) if boundary_width else None
        self.boundary_width = boundary_width

    def reset(self) -> None:
        self.full.reset()
        if self.boundary is not None:
            self.boundary.reset()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: logits (N,K,H,W) or labels (N,H,W), and labels (N,H,W)."""
        if pred.dim() == target.dim() + 1:
            if pred.shape[1] != self.full.num_classes:
                raise InputError(
                    f"logits have {pred.shape[1]} channels but num_classes="
                    f"{self.full.num_classes}; build the metric with the model's classes"
                )
            pred = pred.argmax(dim=1)
        self.full.update(pred, target)
        if self.boundary is not None and self.boundary_width is not None:
            band = boundary_band(target, self.boundary_width)
            self.boundary.update(pred, target, mask=band)

    def all_reduce(self) -> None:
        self.full.all_reduce()
        if self.boundary is not None:
            self.boundary.all_reduce()

    def compute(self) -> dict[str, float | list[float]]:
        out = self.full.compute()
        if self.boundary is not None:
            out["boundary_miou"] = self.boundary.compute()["miou"]
        return out
