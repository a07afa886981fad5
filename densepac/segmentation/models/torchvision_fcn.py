"""torchvision's FCN-ResNet segmentation networks as registry models (``fcn_resnet50``, ``fcn_resnet101``).

Built with ``weights=None, weights_backbone=None``: nothing is downloaded; pretrained
weights load through :func:`densepac.create_model` or :mod:`densepac.segmentation.pretrained`.
"""

from __future__ import annotations

import torch

from densepac.check import check_num_classes
from densepac.errors import InputError
from densepac.models.registry import register_model
from densepac.segmentation.models.base import SegmentationModel

#: Side multiple every smp encoder of depth <= 5 accepts (also a multiple of 16 and 8).


class TorchvisionFCN(SegmentationModel):
    """torchvision FCN (ResNet-50/101 backbone) returning ``out['out']`` logits.

    Args:
        depth: 50 or 101.
        num_classes: output classes (21 for PASCAL VOC).
        aux_loss: also build torchvision's auxiliary FCN head on ``layer3``; its logits
            come from :meth:`forward_aux`, ``forward`` returns the main head only.
    """

    def __init__(self, depth: int = 50, num_classes: int = 21, aux_loss: bool = False) -> None:
        super().__init__()
        from torchvision.models.segmentation import fcn_resnet50, fcn_resnet101

        builders = {50: fcn_resnet50, 101: fcn_resnet101}
        if depth not in builders:
            raise InputError(f"TorchvisionFCN: depth={depth!r}; use 50 or 101")
        check_num_classes(num_classes)
        self.depth, self.num_classes, self.aux_loss = depth, int(num_classes), bool(aux_loss)
        # weights/weights_backbone None: never download; pretrained weights go through create_model.
        self.net = builders[depth](
            weights=None, weights_backbone=None, num_classes=self.num_classes, aux_loss=self.aux_loss
        )

    def forward_aux(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """torchvision's dict: ``out`` (N, K, H, W) and, with ``aux_loss``, ``aux`` (N, K, H, W)."""
        self.check_image(image)
        return self.net(self.normalize(image))

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]

    def extra_repr(self) -> str:
        return f"depth={self.depth}, num_classes={self.num_classes}, aux_loss={self.aux_loss}"


@register_model
def fcn_resnet50(num_classes: int = 21, aux_loss: bool = False) -> TorchvisionFCN:
    """torchvision FCN-ResNet50 (random init; no download)."""
    return TorchvisionFCN(50, num_classes, aux_loss)


@register_model
def fcn_resnet101(num_classes: int = 21, aux_loss: bool = False) -> TorchvisionFCN:
    """torchvision FCN-ResNet101 (random init; no download)."""
    return TorchvisionFCN(101, num_classes, aux_loss)
