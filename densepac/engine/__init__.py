"""One training engine for both tasks: trainer, task adapters, metrics, checkpoints."""

from densepac.engine.checkpoint import load_checkpoint, load_state_dict_safe, save_checkpoint
from densepac.engine.metrics import ConfusionMatrix, DepthMetrics, SegmentationMetrics, depth_metrics
from densepac.engine.tasks import DepthTask, SegmentationTask
from densepac.engine.trainer import Trainer, evaluate

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
