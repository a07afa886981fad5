"""segmentation_models_pytorch architectures as registry models.

``smp_unet``, ``smp_fpn``, ``smp_deeplabv3plus`` (and ``smp`` with ``arch=``): any smp
architecture, ``encoder_name`` default ``resnet18``, built with ``encoder_weights=None``.
smp networks need sides divisible by their output stride; the model pads the normalized
image (replicating its last row/column) to a multiple of 32 and crops the logits back, so
any size works. segmentation_models_pytorch is imported only when such a model is built: it
pulls in timm and takes seconds to import.
"""

from __future__ import annotations

from typing import Any

import torch

from densepac.check import check_num_classes
from densepac.errors import InputError
from densepac.models.registry import register_model
from densepac.segmentation.models.base import SegmentationModel

#: Side multiple every smp encoder of depth <= 5 accepts (also a multiple of 16 and 8).


#: Side multiple every smp encoder of depth <= 5 accepts (also a multiple of 16 and 8).
SMP_MULTIPLE = 32


class SmpSegmentation(SegmentationModel):
    """A segmentation_models_pytorch network that takes any input size.

    Args:
        arch: smp architecture name (``unet``, ``fpn``, ``deeplabv3plus``, ``unetplusplus``,
            ``pspnet``, ``linknet``, ``manet``, ``pan``, ``deeplabv3``, ``upernet``, ...).
        encoder_name: smp / timm (``tu-...``) encoder; default ``resnet18``.
        num_classes: output classes.
        **smp_kwargs: further architecture arguments of ``smp.create_model`` (for example
            ``encoder_depth``, ``decoder_channels``). ``encoder_weights`` is refused: weights
            are loaded by the registry, never downloaded.
    """

    def __init__(
        self, arch: str = "unet", encoder_name: str = "resnet18", num_classes: int = 21, **smp_kwargs: Any
    ) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        check_num_classes(num_classes)
        if smp_kwargs.get("encoder_weights") is not None:
            raise InputError(
                f"smp model: encoder_weights={smp_kwargs['encoder_weights']!r} would download weights; "
                "leave it unset and load a local file with create_model(..., weights=PATH)"
            )
        smp_kwargs.pop("encoder_weights", None)
        for key in ("classes", "in_channels"):
            if key in smp_kwargs:
                raise InputError(f"smp model: pass num_classes instead of {key}= (input is always RGB)")
        known = {a.lower() for a in smp.MODEL_ARCHITECTURES_MAPPING}
        if arch.lower() not in known:
            raise InputError(f"smp model: unknown arch {arch!r}; use one of {', '.join(sorted(known))}")
        try:
            self.net = smp.create_model(
                arch,
                encoder_name=encoder_name,
                encoder_weights=None,
                in_channels=3,
                classes=int(num_classes),
                **smp_kwargs,
            )
        except KeyError:
            # smp raises KeyError for an unknown encoder, with the list of valid names.
            if encoder_name in smp.encoders.get_encoder_names() or encoder_name.startswith("tu-"):
                raise
            raise InputError(
                f"smp model: unknown encoder_name {encoder_name!r}; see smp.encoders.get_encoder_names()"
            ) from None
        self.arch, self.encoder_name, self.num_classes = arch.lower(), encoder_name, int(num_classes)
        self.pad_multiple = max(SMP_MULTIPLE, int(getattr(self.net.encoder, "output_stride", 1)))

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, encoder_name={self.encoder_name!r}, num_classes={self.num_classes}"


@register_model
def smp_unet(encoder_name: str = "resnet18", num_classes: int = 21, **smp_kwargs: Any) -> SmpSegmentation:
    """segmentation_models_pytorch U-Net (encoder_name default resnet18; random init)."""
    return SmpSegmentation("unet", encoder_name, num_classes, **smp_kwargs)


@register_model
def smp_fpn(encoder_name: str = "resnet18", num_classes: int = 21, **smp_kwargs: Any) -> SmpSegmentation:
    """segmentation_models_pytorch FPN (encoder_name default resnet18; random init)."""
    return SmpSegmentation("fpn", encoder_name, num_classes, **smp_kwargs)


@register_model
def smp_deeplabv3plus(encoder_name: str = "resnet18", num_classes: int = 21, **smp_kwargs: Any) -> SmpSegmentation:
    """segmentation_models_pytorch DeepLabV3+ (encoder_name default resnet18; random init)."""
    return SmpSegmentation("deeplabv3plus", encoder_name, num_classes, **smp_kwargs)


@register_model
def smp(
    arch: str = "unet", encoder_name: str = "resnet18", num_classes: int = 21, **smp_kwargs: Any
) -> SmpSegmentation:
    """Any segmentation_models_pytorch architecture (``arch=``), encoder default resnet18; random init."""
    return SmpSegmentation(arch, encoder_name, num_classes, **smp_kwargs)
