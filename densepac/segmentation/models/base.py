"""Shared behaviour of segmentation models: ``forward(image (N,3,H,W) RGB [0,1]) -> logits (N,K,H,W)``."""

from __future__ import annotations

import re

import torch

from densepac.errors import InputError
from densepac.ops.labels import PredictsLabels

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Stage modules of ResNet (``layerN``), DLA (``levelN``) and Shape Adaptor ResNet (``layers.N``) encoders.
_STAGE = re.compile(r"(?:^|\.)(?:layer|level|layers\.)(\d+)$")


class SegmentationModel(PredictsLabels):
    """Base of registry segmentation models.

    Subclasses set ``num_classes`` and implement ``forward``; input RGB is in [0, 1] and each
    model normalises inside itself (:meth:`normalise`). ``predict`` returns label maps.
    """

    task = "segmentation"
    num_classes: int

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        """ImageNet mean/std normalisation of RGB in [0, 1]."""
        mean = image.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = image.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return (image - mean) / std

    def adl_stages(self) -> list[str]:
        """Where ``create_model(..., adl=True)`` puts ADL: the encoder's two deepest stages.

        Found by name (``layerN`` of ResNets, ``levelN`` of DLA, ``layers.N`` of Shape Adaptor
        ResNets); the ADL paper applies it to the last stages of the backbone. Models without
        such stages override this.
        """
        names = [n for n, _ in self.named_modules() if _STAGE.search(n)]
        top = [n for n in names if not any(n.startswith(f"{o}.") for o in names if o != n)]
        if len(top) < 2:
            raise InputError(f"{type(self).__name__} has no layerN/levelN encoder stages to put ADL after; "
                             "name the modules with adl=[...]")
        return sorted(top, key=lambda n: int(_STAGE.search(n).group(1)))[-2:]

    def check_image(self, image: torch.Tensor) -> None:
        if image.dim() != 4 or image.shape[1] != 3:
            raise InputError(f"image must be (N, 3, H, W) RGB in [0, 1], got {tuple(image.shape)}")
