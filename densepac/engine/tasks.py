"""Task adapters: what the one :class:`~densepac.engine.trainer.Trainer` needs to know
about depth upsampling versus segmentation (batch keys, loss, metrics, best score)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from densepac.engine.metrics import DepthMetrics, MetricAccumulator, SegmentationMetrics
from densepac.errors import InputError

__all__ = ["DEPTH_LOSSES", "Task", "DepthTask", "SegmentationTask", "masked_depth_loss"]

#: Depth training losses on valid pixels (metres).
DEPTH_LOSSES = ("l1", "l2", "charbonnier")

Batch = Mapping[str, Any]


def _require(batch: Batch, keys: tuple[str, ...], task: str) -> None:
    missing = [k for k in keys if k not in batch]
    if missing:
        raise InputError(
            f"{task} batch lacks {', '.join(repr(k) for k in missing)} (has "
            f"{sorted(batch)}); use a {task} dataset whose items have {list(keys)}"
        )


class Task(ABC):
    """Glue between a model, a batch dict and the metrics of one kind of prediction.

    ``name`` matches the ``.task`` attribute of registry models; ``monitor`` is the key of
    ``compute()`` used to pick the best checkpoint and ``higher_is_better`` its direction.
    """

    name: str
    monitor: str
    higher_is_better: bool

    def to_device(self, batch: Batch, device: torch.device) -> dict[str, Any]:
        """Copy the tensors of a collated batch to ``device``; other entries stay as they are."""
        non_blocking = device.type == "cuda"
        return {
            k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
        }

    @abstractmethod
    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Run ``model`` on a batch and return its prediction."""

    @abstractmethod
    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Scalar training loss of ``output`` against the batch's target."""

    @abstractmethod
    def new_metrics(self) -> MetricAccumulator:
        """A fresh, empty metric accumulator for one evaluation pass."""

    @abstractmethod
    def evaluate(self, metrics: MetricAccumulator, output: torch.Tensor, batch: Batch) -> None:
        """Add one batch's prediction to ``metrics``."""

    def is_better(self, score: float, best: float | None) -> bool:
        """Whether ``score`` beats ``best`` (None = nothing yet); NaN never wins."""
        if score != score:
            return False
        if best is None:
            return True
        return score > best if self.higher_is_better else score < best


def masked_depth_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "l1", eps: float = 1e-3) -> torch.Tensor:
    """Mean L1, squared error (``"l2"``, i.e. MSE) or Charbonnier ``sqrt(d^2 + eps^2)`` over valid target pixels.

    ``pred`` and ``target``: (N,1,H,W) metres; valid = finite and > 0. With no valid pixel
    the loss is an exact zero that is still connected to ``pred`` (so backward and DDP
    gradient reduction run as usual).
    """
    if pred.shape != target.shape:
        raise InputError(
            f"prediction shape {tuple(pred.shape)} != depth target shape "
            f"{tuple(target.shape)}; the model must output the guide's resolution"
        )
    mask = torch.isfinite(target) & (target > 0)
    # Replace invalid targets before subtracting: NaN * 0 would still poison the sum.
    clean = torch.where(mask, target, torch.zeros_like(target))
    diff = torch.where(mask, pred - clean, torch.zeros_like(pred))
    if kind == "l1":
        per_pixel = diff.abs()
    elif kind == "l2":
        per_pixel = diff * diff
    elif kind == "charbonnier":
        per_pixel = torch.sqrt(diff * diff + eps * eps) * mask
    else:
        raise InputError(f"depth loss {kind!r} is unknown; use one of {DEPTH_LOSSES}")
    count = mask.sum().clamp(min=1)
    return per_pixel.sum() / count


class DepthTask(Task):
    """Guided depth upsampling: ``model(batch["depth_lr"], batch["rgb"])`` vs ``batch["depth"]``.

    ``loss``: one of :data:`DEPTH_LOSSES` on valid pixels ("l2" optimises RMSE). ``crop``, ``min_depth``,
    ``max_depth``: evaluation protocol of :class:`DepthMetrics`. ``monitor``: the
    :class:`DepthMetrics` key that picks the best checkpoint (lower is better for the
    error metrics, higher for ``delta*``).
    """

    name = "depth"

    def __init__(
        self,
        loss: str = "l1",
        charbonnier_eps: float = 1e-3,
        crop: int | tuple[int, int, int, int] = 0,
        min_depth: float | None = None,
        max_depth: float | None = None,
        monitor: str = "rmse",
    ) -> None:
        if loss not in DEPTH_LOSSES:
            raise InputError(f"depth loss {loss!r} is unknown; use one of {DEPTH_LOSSES}")
        keys = ("rmse", "rmse_per_image", "mae", "absrel", "delta1", "delta2", "delta3")
        if monitor not in keys:
            raise InputError(f"monitor={monitor!r} is not a depth metric; use one of {keys}")
        self.loss_kind = loss
        self.charbonnier_eps = charbonnier_eps
        self.crop = crop
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.monitor = monitor
        self.higher_is_better = monitor.startswith("delta")
        DepthMetrics(crop, min_depth, max_depth)  # fail now on a bad protocol, not at eval

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        _require(batch, ("depth_lr", "rgb"), "depth")
        return model(batch["depth_lr"], batch["rgb"])

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        _require(batch, ("depth",), "depth")
        return masked_depth_loss(output, batch["depth"], self.loss_kind, self.charbonnier_eps)

    def new_metrics(self) -> DepthMetrics:
        return DepthMetrics(self.crop, self.min_depth, self.max_depth)

    def evaluate(self, metrics: MetricAccumulator, output: torch.Tensor, batch: Batch) -> None:
        _require(batch, ("depth",), "depth")
        metrics.update(output, batch["depth"])

    def __repr__(self) -> str:
        return f"DepthTask(loss={self.loss_kind!r}, crop={self.crop!r}, monitor={self.monitor!r})"


class SegmentationTask(Task):
    """Semantic segmentation: ``model(batch["image"])`` logits vs ``batch["label"]``.

    Cross-entropy ignoring ``ignore_index`` (optionally class-weighted); metrics are mIoU,
    pixel / mean-class accuracy and, with ``boundary_width``, the mIoU within that many
    pixels of a label edge (``boundary_miou``). ``monitor`` defaults to ``miou``.
    """

    name = "segmentation"

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        boundary_width: int | None = 3,
        class_weights: torch.Tensor | None = None,
        monitor: str = "miou",
    ) -> None:
        if num_classes < 2:
            raise InputError(f"num_classes={num_classes}; segmentation needs at least 2 classes")
        keys = ("miou", "pixel_acc", "mean_class_acc", "boundary_miou")
        if monitor not in keys or (monitor == "boundary_miou" and not boundary_width):
            raise InputError(
                f"monitor={monitor!r} is not an available segmentation metric; use one of "
                f"{keys} (boundary_miou needs boundary_width)"
            )
        if class_weights is not None and class_weights.shape != (num_classes,):
            raise InputError(
                f"class_weights has shape {tuple(class_weights.shape)}; give one weight "
                f"per class, shape ({num_classes},)"
            )
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.boundary_width = boundary_width
        self.class_weights = class_weights
        self.monitor = monitor
        self.higher_is_better = True
        SegmentationMetrics(num_classes, ignore_index, boundary_width)  # validate now

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        _require(batch, ("image",), "segmentation")
        return model(batch["image"])

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        _require(batch, ("label",), "segmentation")
        label = batch["label"]
        if output.dim() != 4 or output.shape[1] != self.num_classes:
            raise InputError(
                f"logits have shape {tuple(output.shape)}; the model must output (N, {self.num_classes}, H, W)"
            )
        if output.shape[0] != label.shape[0] or output.shape[2:] != label.shape[1:]:
            raise InputError(
                f"logits {tuple(output.shape)} do not match labels {tuple(label.shape)}; "
                "the model must output the label resolution"
            )
        weight = None
        if self.class_weights is not None:
            weight = self.class_weights.to(device=output.device, dtype=output.dtype)
        # Sum / count instead of reduction="mean": an all-ignore batch gives 0, not NaN.
        total = F.cross_entropy(output, label, weight=weight, ignore_index=self.ignore_index, reduction="sum")
        valid = label != self.ignore_index
        if weight is not None:
            safe = torch.where(valid, label, torch.zeros_like(label))
            denom = (weight[safe] * valid).sum().clamp(min=torch.finfo(output.dtype).tiny)
        else:
            denom = valid.sum().clamp(min=1).to(output.dtype)
        return total / denom

    def new_metrics(self) -> SegmentationMetrics:
        return SegmentationMetrics(self.num_classes, self.ignore_index, self.boundary_width)

    def evaluate(self, metrics: MetricAccumulator, output: torch.Tensor, batch: Batch) -> None:
        _require(batch, ("label",), "segmentation")
        metrics.update(output, batch["label"])

    def __repr__(self) -> str:
        return (
            f"SegmentationTask(num_classes={self.num_classes}, "
            f"ignore_index={self.ignore_index}, monitor={self.monitor!r})"
        )
