"""Third-party segmentation networks as registry models, plus the size adapters they need.

- ``fcn_resnet50`` / ``fcn_resnet101``: torchvision's FCN heads on a ResNet (built with
  ``weights=None, weights_backbone=None``: nothing is downloaded).
- ``smp_unet``, ``smp_fpn``, ``smp_deeplabv3plus`` (and ``smp`` with ``arch=``): any
  segmentation_models_pytorch architecture, ``encoder_name`` default ``resnet18``, built with
  ``encoder_weights=None``.

Every adapter is a :class:`~densepac.models.seg_base.SegmentationModel`: ``forward(image
(N, 3, H, W) RGB in [0, 1]) -> logits (N, K, H, W)``, ImageNet normalisation inside. smp
networks need sides divisible by their output stride; the adapter pads the normalised image
(replicating its last row/column) to a multiple of 32 and crops the logits back, so any
size works. segmentation_models_pytorch is imported only when such a model is built: it
pulls in timm and takes seconds to import.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from densepac.errors import InputError
from densepac.models.registry import register_model
from densepac.models.seg_base import SegmentationModel

#: Side multiple every smp encoder of depth <= 5 accepts (also a multiple of 16 and 8).
SMP_MULTIPLE = 32


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "replicate") -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (N, C, H, W) at the bottom/right so H and W divide by ``multiple``.

    Bottom/right only, so pixel (0, 0) stays on the pooling grid and cropping back is
    ``y[..., :H, :W]``. ``replicate`` (default) repeats the last row/column, which keeps the
    border pixels' context plausible at any size (``reflect`` fails on tiny inputs).

    Returns:
        (padded tensor, original (H, W)).
    """
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


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
        _check_classes(num_classes)
        self.depth, self.num_classes, self.aux_loss = depth, int(num_classes), bool(aux_loss)
        # weights/weights_backbone None: never download; pretrained weights go through create_model.
        self.net = builders[depth](weights=None, weights_backbone=None, num_classes=self.num_classes,
                                   aux_loss=self.aux_loss)

    def forward_aux(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """torchvision's dict: ``out`` (N, K, H, W) and, with ``aux_loss``, ``aux`` (N, K, H, W)."""
        self.check_image(image)
        return self.net(self.normalise(image))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.forward_aux(image)["out"]

    def extra_repr(self) -> str:
        return f"depth={self.depth}, num_classes={self.num_classes}, aux_loss={self.aux_loss}"


@register_model("fcn_resnet50", task="segmentation")
def fcn_resnet50(num_classes: int = 21, aux_loss: bool = False) -> TorchvisionFCN:
    """torchvision FCN-ResNet50 (random init; no download)."""
    return TorchvisionFCN(50, num_classes, aux_loss)


@register_model("fcn_resnet101", task="segmentation")
def fcn_resnet101(num_classes: int = 21, aux_loss: bool = False) -> TorchvisionFCN:
    """torchvision FCN-ResNet101 (random init; no download)."""
    return TorchvisionFCN(101, num_classes, aux_loss)


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

    def __init__(self, arch: str = "unet", encoder_name: str = "resnet18", num_classes: int = 21,
                 **smp_kwargs: Any) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        _check_classes(num_classes)
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
            self.net = smp.create_model(arch, encoder_name=encoder_name, encoder_weights=None, in_channels=3,
                                        classes=int(num_classes), **smp_kwargs)
        except KeyError:
            # smp raises KeyError for an unknown encoder, with the list of valid names.
            if encoder_name in smp.encoders.get_encoder_names() or encoder_name.startswith("tu-"):
                raise
            raise InputError(f"smp model: unknown encoder_name {encoder_name!r}; see smp.encoders.get_encoder_names()"
                             ) from None
        self.arch, self.encoder_name, self.num_classes = arch.lower(), encoder_name, int(num_classes)
        self.pad_multiple = max(SMP_MULTIPLE, int(getattr(self.net.encoder, "output_stride", 1)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        self.check_image(image)
        x, (h, w) = pad_to_multiple(self.normalise(image), self.pad_multiple)
        return self.net(x)[..., :h, :w]

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, encoder_name={self.encoder_name!r}, num_classes={self.num_classes}"


def _check_classes(num_classes: Any) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise InputError(f"num_classes={num_classes!r} must be a positive integer (21 for PASCAL VOC)")


def _register_smp(arch: str, title: str) -> None:
    def factory(encoder_name: str = "resnet18", num_classes: int = 21, **smp_kwargs: Any) -> SmpSegmentation:
        return SmpSegmentation(arch, encoder_name, num_classes, **smp_kwargs)

    factory.__doc__ = f"segmentation_models_pytorch {title} (encoder_name default resnet18; random init)."
    register_model(f"smp_{arch}", task="segmentation")(factory)


_register_smp("unet", "U-Net")
_register_smp("fpn", "FPN")
_register_smp("deeplabv3plus", "DeepLabV3+")


@register_model("smp", task="segmentation")
def smp_model(arch: str = "unet", encoder_name: str = "resnet18", num_classes: int = 21,
              **smp_kwargs: Any) -> SmpSegmentation:
    """Any segmentation_models_pytorch architecture (``arch=``), encoder default resnet18; random init."""
    return SmpSegmentation(arch, encoder_name, num_classes, **smp_kwargs)
