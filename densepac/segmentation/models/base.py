"""Shared behaviour of segmentation models: ``forward(image (N,3,H,W) RGB [0,1]) -> logits (N,K,H,W)``."""

from __future__ import annotations

import re

import torch

from densepac.errors import InputError
from densepac.models.blocks import imagenet_normalize, pad_to_multiple, resize
from densepac.ops.labels import PredictsLabels

#: Stage modules of ResNet (``layerN``), DLA (``levelN``) and Shape Adaptor ResNet (``layers.N``) encoders.
_STAGE = re.compile(r"(?:^|\.)(?:layer|level|layers\.)(\d+)$")


class SegmentationModel(PredictsLabels):
    """Base of registry segmentation models: one ``forward`` for all (smp's ``SegmentationModel`` habit).

    ``forward(image)`` checks the (N, 3, H, W) RGB input in [0, 1], normalizes it with the
    ImageNet statistics, pads it at the bottom/right to a multiple of :attr:`pad_multiple`
    (the network's output stride) so any size works, runs :meth:`forward_logits`, resizes
    its logits to the padded size when they come out smaller, and crops the padding away.
    Subclasses set ``num_classes`` and ``pad_multiple`` and implement :meth:`forward_logits`.
    ``predict`` returns label maps.
    """

    task = "segmentation"
    num_classes: int
    #: Sides of the normalized image are padded to a multiple of this before the network runs.
    pad_multiple: int = 1

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits (N, K, H, W) of RGB images (N, 3, H, W) in [0, 1]."""
        self.check_image(image)
        x, (h, w) = pad_to_multiple(self.normalize(image), self.pad_multiple)
        return resize(self.forward_logits(x), x.shape[-2:])[..., :h, :w]

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a normalized, padded image (N, 3, H, W): (N, K, H, W), or smaller (upsampled bilinearly)."""
        raise NotImplementedError

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """ImageNet mean/std normalization of RGB in [0, 1]."""
        return imagenet_normalize(image)

    def adl_stages(self) -> list[str]:
        """Where ``create_model(..., adl=True)`` puts ADL: the encoder's two deepest stages.

        Found by name (``layerN`` of ResNets, ``levelN`` of DLA, ``layers.N`` of Shape Adaptor
        ResNets); the ADL paper applies it to the last stages of the backbone. Models without
        such stages override this.
        """
        names = [n for n, _ in self.named_modules() if _STAGE.search(n)]
        top = [n for n in names if not any(n.startswith(f"{o}.") for o in names if o != n)]
        if len(top) < 2:
            raise InputError(
                f"{type(self).__name__} has no layerN/levelN encoder stages to put ADL after; "
                "name the modules with adl=[...]"
            )
        return sorted(top, key=lambda n: int(_STAGE.search(n).group(1)))[-2:]

    def check_image(self, image: torch.Tensor) -> None:
        if image.dim() != 4 or image.shape[1] != 3:
            raise InputError(f"image must be (N, 3, H, W) RGB in [0, 1], got {tuple(image.shape)}")
