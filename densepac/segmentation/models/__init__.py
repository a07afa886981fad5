"""Segmentation models: ``forward(image (N,3,H,W) RGB in [0,1]) -> logits (N,K,H,W)``."""

from densepac.segmentation.models.base import SegmentationModel
from densepac.segmentation.models.dla_up import DLAUpSeg
from densepac.segmentation.models.encoder_fcn import EncoderFCN8s
from densepac.segmentation.models.encoders import build_encoder
from densepac.segmentation.models.fcn import FCN8s
from densepac.segmentation.models.smp import SmpSegmentation
from densepac.segmentation.models.torchvision_seg import TorchvisionSegmentation

__all__ = [
    "DLAUpSeg",
    "EncoderFCN8s",
    "FCN8s",
    "SegmentationModel",
    "SmpSegmentation",
    "TorchvisionSegmentation",
    "build_encoder",
]
