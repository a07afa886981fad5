"""Shared behaviour of segmentation models: ``forward(image (N,3,H,W) RGB [0,1]) -> logits (N,K,H,W)``."""

from __future__ import annotations

import re

import torch
from torch import nn

from densepac.errors import InputError
from densepac.models.blocks import crop_to, imagenet_normalize, pad_to_multiple, resize
from densepac.ops.labels import PredictsLabels
from densepac.ops.tracing import any_size

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
        with any_size():  # exported for any size, the deepest feature maps may be 1x1
            x, (h, w) = pad_to_multiple(self.normalize(image), self.pad_multiple)
            return crop_to(resize(self.forward_logits(x), x.shape[-2:]), (h, w))

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a normalized, padded image (N, 3, H, W): (N, K, H, W), or smaller (upsampled bilinearly)."""
        raise NotImplementedError

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """ImageNet mean/std normalization of RGB in [0, 1]."""
        return imagenet_normalize(image)

    def encoder_stages(self) -> list[str]:
        """The encoder's stage modules, shallow to deep, found by name: ``layerN`` of ResNets,
        ``levelN`` of DLA, ``layers.N`` of Shape Adaptor ResNets. Empty when there are none."""
        names = [n for n, _ in self.named_modules() if _STAGE.search(n)]
        top = [n for n in names if not any(n.startswith(f"{o}.") for o in names if o != n)]
        return sorted(top, key=lambda n: int(_STAGE.search(n).group(1)))

    def adl_stages(self) -> list[str]:
        """Where ``create_model(..., adl=True)`` puts ADL: the encoder's two deepest stages.

        The ADL paper applies it to the last stages of the backbone. Models without named
        stages (:meth:`encoder_stages`) override this.
        """
        stages = self.encoder_stages()
        if len(stages) < 2:
            raise InputError(
                f"{type(self).__name__} has no layerN/levelN encoder stages to put ADL after; "
                "name the modules with adl=[...]"
            )
        return stages[-2:]

    def hot_swap_recipe(self) -> tuple[list[str], str]:
        """(convolutions to swap for PAC, the layer whose output guides them): the PAC paper's recipe.

        As the paper does for FCN-8s (conv3_3, conv4_3, conv5_3 guided by conv2_2): the last
        spatial (k > 1) convolution of each of the encoder's three deepest stages, guided by
        the first stage's output, early features at a high resolution. Models without named
        stages override this.
        """
        stages = self.encoder_stages()
        if len(stages) < 4:
            raise InputError(
                f"{type(self).__name__} has no layerN/levelN encoder stages to take a hot-swap recipe from; "
                "name the convolutions and the guide (--swap, --guide)"
            )
        modules = dict(self.named_modules())
        targets = []
        for stage in stages[-3:]:
            spatial = [
                n for n, m in modules[stage].named_modules() if isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1
            ]
            if spatial:
                targets.append(f"{stage}.{spatial[-1]}")
        # The first stage's last block, not the stage itself: some encoders iterate a stage's
        # blocks without calling the stage, so only its blocks' hooks fire.
        children = [n for n, _ in modules[stages[0]].named_children()]
        return targets, f"{stages[0]}.{children[-1]}" if children else stages[0]

    def check_image(self, image: torch.Tensor) -> None:
        if image.dim() != 4 or image.shape[1] != 3:
            raise InputError(f"image must be (N, 3, H, W) RGB in [0, 1], got {tuple(image.shape)}")
