"""torchvision's segmentation networks as registry models: FCN, DeepLabV3 and LR-ASPP.

``fcn_resnet50``, ``fcn_resnet101``, ``deeplabv3_resnet50``, ``deeplabv3_resnet101``,
``deeplabv3_mobilenet_v3_large`` and ``lraspp_mobilenet_v3_large``, built with
``weights=None, weights_backbone=None``: nothing is downloaded here. torchvision's own
checkpoints (COCO/VOC, with or without the auxiliary head) load through
``create_model(name, weights=FILE)`` or ``weights="torchvision:ENUM"``
(:mod:`densepac.segmentation.pretrained`, :mod:`densepac.models.hub`).
"""

from __future__ import annotations

import torch

from densepac.check import check_choice, check_num_classes
from densepac.errors import InputError
from densepac.models.registry import register_model
from densepac.segmentation.models.base import SegmentationModel

#: Registry name -> ResNet depth of its backbone (None: MobileNetV3).
TORCHVISION_ARCHS: dict[str, int | None] = {
    "fcn_resnet50": 50,
    "fcn_resnet101": 101,
    "deeplabv3_resnet50": 50,
    "deeplabv3_resnet101": 101,
    "deeplabv3_mobilenet_v3_large": None,
    "lraspp_mobilenet_v3_large": None,
}


class TorchvisionSegmentation(SegmentationModel):
    """A torchvision segmentation network returning ``out['out']`` logits.

    Args:
        arch: one of :data:`TORCHVISION_ARCHS`.
        num_classes: output classes (21 for PASCAL VOC, as torchvision's COCO checkpoints).
        aux_loss: also build torchvision's auxiliary head (FCN and DeepLabV3); its logits
            come from :meth:`forward_aux`, ``forward`` returns the main head only.
    """

    def __init__(self, arch: str = "fcn_resnet50", num_classes: int = 21, aux_loss: bool = False) -> None:
        super().__init__()
        from torchvision.models import segmentation

        check_choice(arch, tuple(TORCHVISION_ARCHS), "arch")
        check_num_classes(num_classes)
        if aux_loss and arch.startswith("lraspp"):
            raise InputError(f"{arch} has no auxiliary head; build it with aux_loss=False")
        self.arch, self.depth = arch, TORCHVISION_ARCHS[arch]
        self.num_classes, self.aux_loss = int(num_classes), bool(aux_loss)
        extra = {} if arch.startswith("lraspp") else {"aux_loss": self.aux_loss}
        # weights/weights_backbone None: never download; pretrained weights go through create_model.
        self.net = getattr(segmentation, arch)(
            weights=None, weights_backbone=None, num_classes=self.num_classes, **extra
        )

    def forward_aux(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """torchvision's dict: ``out`` (N, K, H, W) and, with ``aux_loss``, ``aux`` (N, K, H, W)."""
        self.check_image(image)
        return self.net(self.normalize(image))

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]

    def hot_swap_recipe(self) -> tuple[list[str], str]:
        """ResNets: the base recipe. MobileNetV3 (numbered blocks, no named stages): the
        depthwise convolutions of its last three inverted-residual blocks, guided by block 1."""
        if self.depth is not None:
            return super().hot_swap_recipe()
        blocks = [name for name, m in self.net.backbone.named_children() if hasattr(m, "block")]
        return [f"net.backbone.{b}.block.1.0" for b in blocks[-3:]], f"net.backbone.{blocks[0]}"

    def extra_repr(self) -> str:
        return f"arch={self.arch}, num_classes={self.num_classes}, aux_loss={self.aux_loss}"


@register_model
def fcn_resnet50(num_classes: int = 21, aux_loss: bool = False) -> TorchvisionSegmentation:
    """torchvision FCN-ResNet50 (random init; load COCO/VOC weights with weights=)."""
    return TorchvisionSegmentation("fcn_resnet50", num_classes, aux_loss)


@register_model
def fcn_resnet101(num_classes: int = 21, aux_loss: bool = False) -> TorchvisionSegmentation:
    """torchvision FCN-ResNet101 (random init; load COCO/VOC weights with weights=)."""
    return TorchvisionSegmentation("fcn_resnet101", num_classes, aux_loss)


@register_model
def deeplabv3_resnet50(num_classes: int = 21, aux_loss: bool = False) -> TorchvisionSegmentation:
    """torchvision DeepLabV3-ResNet50 (random init; load COCO/VOC weights with weights=)."""
    return TorchvisionSegmentation("deeplabv3_resnet50", num_classes, aux_loss)


@register_model
def deeplabv3_resnet101(num_classes: int = 21, aux_loss: bool = False) -> TorchvisionSegmentation:
    """torchvision DeepLabV3-ResNet101 (random init; load COCO/VOC weights with weights=)."""
    return TorchvisionSegmentation("deeplabv3_resnet101", num_classes, aux_loss)


@register_model
def deeplabv3_mobilenet_v3_large(num_classes: int = 21, aux_loss: bool = False) -> TorchvisionSegmentation:
    """torchvision DeepLabV3-MobileNetV3-Large (random init; load COCO/VOC weights with weights=)."""
    return TorchvisionSegmentation("deeplabv3_mobilenet_v3_large", num_classes, aux_loss)


@register_model
def lraspp_mobilenet_v3_large(num_classes: int = 21) -> TorchvisionSegmentation:
    """torchvision LR-ASPP-MobileNetV3-Large (random init; load COCO/VOC weights with weights=)."""
    return TorchvisionSegmentation("lraspp_mobilenet_v3_large", num_classes)
