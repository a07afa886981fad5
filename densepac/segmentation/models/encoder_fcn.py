"""FCN-8s-style segmentation head over any encoder (Long, Shelhamer & Darrell, CVPR 2015).

``fcn8s`` takes an encoder by name (:func:`densepac.segmentation.models.encoders.build_encoder`: a registry
encoder such as ``shape_adaptor_resnet18``, or an smp/timm name such as ``resnet18``) and puts
FCN-8s's skip architecture on its last three stages (strides 8/16/32 for a plain ResNet):

- a 1x1 score layer per stage (``score_pool3``, ``score_pool4``, ``score_fr``, the FCN
  names), zero-initialised as in the paper, so training starts from a constant prediction;
- fused deep to shallow: the deeper score map is upsampled to the skip's actual size and
  added, then the sum is upsampled to the input size.

Upsampling is bilinear interpolation (``align_corners=False``) to the exact target size,
not FCN's bilinear-initialised transposed convolutions: encoder stages need not halve
(a Shape Adaptor encoder's sides follow its learned scales), so a fixed x2 deconvolution
would need a resize anyway, and FCN reports that learning the upsampling gains little.

smp/timm encoders may need sides divisible by their output stride: the normalized image is
padded at the bottom/right to a multiple of 32 and the logits cropped back. An encoder that
takes any size says so with ``pad_multiple = 1`` (the Shape Adaptor encoders do): padding
would change the shapes its adaptors compute.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from densepac.check import check_int, check_num_classes
from densepac.errors import InputError
from densepac.models.blocks import resize
from densepac.models.registry import register_model
from densepac.segmentation.models.base import SegmentationModel
from densepac.segmentation.models.encoders import build_encoder
from densepac.segmentation.models.smp import SMP_MULTIPLE


class EncoderFCN8s(SegmentationModel):
    """FCN-8s head on any encoder: ``forward(image (N,3,H,W) RGB [0,1]) -> logits (N,K,H,W)``, any size.

    Args:
        encoder_name: registry encoder or smp/timm encoder name (random init, nothing is
            downloaded), or an encoder module following smp's protocol.
        num_classes: output classes K (21 for PASCAL VOC).
        encoder_depth: stages of the encoder (at least 3); the head scores the last three.
        encoder_kwargs: extra arguments of a registry encoder's factory (for example
            ``{"input_size": 512}`` for ``shape_adaptor_resnet18``).
    """

    def __init__(
        self,
        encoder_name: str | nn.Module = "resnet18",
        num_classes: int = 21,
        encoder_depth: int = 5,
        encoder_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        check_int(encoder_depth, "fcn8s: encoder_depth (FCN-8s scores three stages)", minimum=3)
        self.encoder = build_encoder(encoder_name, in_channels=3, depth=encoder_depth, **dict(encoder_kwargs or {}))
        channels = list(self.encoder.out_channels)
        if len(channels) < 4:
            raise InputError(f"fcn8s: encoder {encoder_name!r} has {len(channels) - 1} stages; FCN-8s needs 3 or more")
        self.encoder_name = encoder_name if isinstance(encoder_name, str) else type(encoder_name).__name__
        self.num_classes = int(num_classes)
        self.pad_multiple = int(getattr(self.encoder, "pad_multiple", SMP_MULTIPLE))
        k = self.num_classes
        self.score_pool3 = nn.Conv2d(channels[-3], k, 1)  # stride 8 on a plain ResNet
        self.score_pool4 = nn.Conv2d(channels[-2], k, 1)  # stride 16
        self.score_fr = nn.Conv2d(channels[-1], k, 1)  # stride 32
        for score in (self.score_fr, self.score_pool4, self.score_pool3):
            nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        pool3, pool4, top = self.encoder(x)[-3:]
        y = self.score_fr(top)
        y = resize(y, pool4.shape[-2:]) + self.score_pool4(pool4)
        return resize(y, pool3.shape[-2:]) + self.score_pool3(pool3)

    def extra_repr(self) -> str:
        return f"encoder_name={self.encoder_name!r}, num_classes={self.num_classes}"


@register_model
def fcn8s(encoder_name: str = "resnet18", num_classes: int = 21, **kwargs: Any) -> EncoderFCN8s:
    """FCN-8s-style head (pool3/pool4/last-stage scores) on any smp/timm or registry encoder."""
    return EncoderFCN8s(encoder_name=encoder_name, num_classes=num_classes, **kwargs)
