"""One training engine for both tasks: trainer, task adapters, metrics, checkpoints."""

from .checkpoint import load_checkpoint, load_state_dict_safe, save_checkpoint
from .metrics import ConfusionMatrix, DepthMetrics, SegmentationMetrics, depth_metrics
from .tasks import DepthTask, SegmentationTask
from .trainer import Trainer, evaluate

__all__ = [
    "ConfusionMatrix",
    "DepthMetrics",
    "DepthTask",
    "SegmentationMetrics",
    "SegmentationTask",
    "Trainer",
    "depth_metrics",
    "evaluate",
    "load_checkpoint",
    "load_state_dict_safe",
    "save_checkpoint",
]
