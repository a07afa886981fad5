"""FCN-8s on a VGG16 backbone (Long, Shelhamer & Darrell, CVPR 2015) and its PAC variant.

Layer names follow the Caffe model, so they read the same as in the papers:
``features.conv1_1 ... features.conv5_3`` (with ``relu*`` and ``pool1 ... pool5`` between
them), ``fc6`` (7x7 conv) and ``fc7`` (1x1 conv), the score layers ``score_fr``,
``score_pool4``, ``score_pool3`` and the transposed convolutions ``upscore2``,
``upscore_pool4`` (x2 each) and ``upscore8`` (x8). :data:`VGG16_LAYERS` maps torchvision's
``vgg16().features`` indices to these names; :func:`load_vgg16_backbone` copies a torchvision
ImageNet ``vgg16`` state dict in (its first two classifier layers become ``fc6``/``fc7``).

Any input size: instead of Caffe's 100-pixel padding of ``conv1_1`` and the offset crops that
go with it, the normalized image is padded at the bottom/right (replicating the border) to a
multiple of 32, every convolution keeps its size (``fc6`` is padded by 3), so ``pool5`` is
exactly H/32 and each transposed convolution exactly doubles (x8: multiplies) the size; the
logits are then cropped back to (N, K, H, W). Skip additions need no crop offsets at all.

Transposed convolutions (kernel 2f, stride f, padding f/2, no bias) start as bilinear
interpolation: in the interior they equal ``F.interpolate(mode="bilinear",
align_corners=False)``; within f/2 pixels of the border they see zeros beyond the image.
Score layers start at zero, as in the paper, so training begins from a constant prediction.

``pac_fcn8s_vgg16`` is the PAC paper's recipe (Su et al., CVPR 2019, section 5.3): the output
of ``conv2_2`` after its ReLU guides ``conv3_3``, ``conv4_3`` and ``conv5_3``, hot-swapped for
PAC layers (:func:`densepac.models.hotswap.hot_swap`) that keep their weights.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from densepac.check import check_num_classes
from densepac.errors import InputError, WeightsError
from densepac.models.blocks import bilinear_upsampler
from densepac.models.hotswap import GuidedConv2d, hot_swap
from densepac.models.registry import register_model
from densepac.models.weights import placed_like
from densepac.segmentation.models.base import SegmentationModel

#: Convolutions per VGG16 stage.
VGG16_STAGES: tuple[int, ...] = (2, 2, 3, 3, 3)
#: Channel widths of the VGG16 stages.
VGG16_WIDTHS: tuple[int, ...] = (64, 128, 256, 512, 512)
#: Output stride of pool5: inputs are padded to a multiple of it.
FCN_STRIDE = 32


def _vgg_layer_names() -> tuple[tuple[int, str], ...]:
    """(torchvision ``features`` index, our name) for every VGG16 feature layer."""
    names: list[str] = []
    for stage, count in enumerate(VGG16_STAGES, start=1):
        for j in range(1, count + 1):
            names += [f"conv{stage}_{j}", f"relu{stage}_{j}"]
        names.append(f"pool{stage}")
    return tuple(enumerate(names))


#: torchvision ``vgg16().features`` index -> layer name inside :attr:`FCN8s.features`.
VGG16_LAYERS: tuple[tuple[int, str], ...] = _vgg_layer_names()
#: Layers hot-swapped by ``pac_fcn8s_vgg16`` and the layer that guides them (paper recipe).
PAC_TARGETS: tuple[str, ...] = ("features.conv3_3", "features.conv4_3", "features.conv5_3")
PAC_GUIDE = "features.relu2_2"


def _check_positive_ints(name: str, values: Sequence[int], count: int) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        out = ()
    if len(out) != count or min(out, default=0) < 1 or any(isinstance(v, bool) for v in values):
        raise InputError(f"FCN8s: {name}={values!r}; give {count} positive integers, e.g. {VGG16_WIDTHS}")
    return out


class FCN8s(SegmentationModel):
    """FCN-8s with a VGG16 backbone; ``forward(image (N,3,H,W) in [0,1]) -> logits (N,K,H,W)`` at any size.

    Args:
        num_classes: output classes K (21 for PASCAL VOC).
        widths: channels of the five VGG stages; only the default loads VGG16 weights.
            Smaller widths give the same topology for quick experiments.
        fc_channels: channels of ``fc6`` / ``fc7`` (4096 in VGG16).
        dropout: dropout after ``fc6`` and ``fc7``.
        learn_upsampling: train the transposed convolutions (False keeps them bilinear).
    """

    pad_multiple = FCN_STRIDE

    def __init__(
        self,
        num_classes: int = 21,
        widths: Sequence[int] = VGG16_WIDTHS,
        fc_channels: int = 4096,
        dropout: float = 0.5,
        learn_upsampling: bool = True,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.widths = _check_positive_ints("widths", widths, len(VGG16_STAGES))
        (fc,) = _check_positive_ints("fc_channels", [fc_channels], 1)
        if not 0.0 <= float(dropout) < 1.0:
            raise InputError(f"FCN8s: dropout={dropout!r} must be in [0, 1)")
        self.num_classes, self.fc_channels = num_classes, fc
        k = num_classes

        layers: list[tuple[str, nn.Module]] = []
        in_ch = 3
        for stage, (count, width) in enumerate(zip(VGG16_STAGES, self.widths), start=1):
            for j in range(1, count + 1):
                layers.append((f"conv{stage}_{j}", nn.Conv2d(in_ch, width, 3, padding=1)))
                # Not in place: a hook (hot-swap guide, feature extraction) on the conv then
                # sees its pre-activation output, not a tensor overwritten afterwards.
                layers.append((f"relu{stage}_{j}", nn.ReLU()))
                in_ch = width
            layers.append((f"pool{stage}", nn.MaxPool2d(2, 2)))
        self.features = nn.Sequential(OrderedDict(layers))

        self.fc6 = nn.Conv2d(self.widths[-1], fc, 7, padding=3)
        self.relu6 = nn.ReLU()
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = nn.Conv2d(fc, fc, 1)
        self.relu7 = nn.ReLU()
        self.drop7 = nn.Dropout(dropout)
        self.score_fr = nn.Conv2d(fc, k, 1)
        self.score_pool4 = nn.Conv2d(self.widths[3], k, 1)
        self.score_pool3 = nn.Conv2d(self.widths[2], k, 1)
        self.upscore2 = bilinear_upsampler(k, 2, depthwise=False)
        self.upscore_pool4 = bilinear_upsampler(k, 2, depthwise=False)
        self.upscore8 = bilinear_upsampler(k, 8, depthwise=False)
        for score in (self.score_fr, self.score_pool4, self.score_pool3):
            nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)
        if not learn_upsampling:
            for up in (self.upscore2, self.upscore_pool4, self.upscore8):
                up.weight.requires_grad_(False)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        skips: dict[str, torch.Tensor] = {}
        for name, layer in self.features.named_children():
            x = layer(x)
            if name in ("pool3", "pool4"):
                skips[name] = x
        x = self.drop6(self.relu6(self.fc6(x)))
        x = self.drop7(self.relu7(self.fc7(x)))
        x = self.upscore2(self.score_fr(x))  # H/16
        x = self.upscore_pool4(x + self.score_pool4(skips["pool4"]))  # H/8
        return self.upscore8(x + self.score_pool3(skips["pool3"]))  # H

    def adl_stages(self) -> list[str]:
        """ADL after ``pool4`` and ``conv5_3``'s ReLU: parameter-free layers of the two deepest stages."""
        return ["features.pool4", "features.relu5_3"]

    def hot_swap_recipe(self) -> tuple[list[str], str]:
        """The PAC paper's: conv3_3, conv4_3 and conv5_3 guided by conv2_2's ReLU."""
        return list(PAC_TARGETS), PAC_GUIDE

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, widths={self.widths}, fc_channels={self.fc_channels}"


@register_model
def fcn8s_vgg16(num_classes: int = 21, **kwargs: Any) -> FCN8s:
    """FCN-8s on VGG16 (torchvision layout; any input size)."""
    return FCN8s(num_classes=num_classes, **kwargs)


def _param_owner(model: nn.Module, name: str) -> nn.Module:
    """The module holding ``name``'s weight: the PAC layer inside a hot-swapped wrapper."""
    layer = model.get_submodule(name)
    return layer.pac if isinstance(layer, GuidedConv2d) else layer


def _strip_prefix(state_dict: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    # DataParallel / DDP checkpoints prefix every key with "module.".
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return state_dict


def load_vgg16_backbone(model: FCN8s, state_dict: Mapping[str, torch.Tensor], load_fc: bool = True) -> list[str]:
    """Copy a torchvision ``vgg16`` state dict into ``model``'s backbone, in place.

    ``features.<i>.{weight,bias}`` go to the conv named by :data:`VGG16_LAYERS`;
    with ``load_fc``, ``classifier.0`` (4096 x 25088) is reshaped to the 7x7 ``fc6`` and
    ``classifier.3`` to the 1x1 ``fc7``. The 1000-class ``classifier.6`` is not used. Works on
    hot-swapped models too (weights go into the PAC layers).

    Returns:
        The names of the model parameters that were written.

    Raises:
        WeightsError: a key is missing or a tensor does not fit (e.g. non-default ``widths``).
    """
    if not isinstance(model, FCN8s):
        raise InputError(f"load_vgg16_backbone: model is a {type(model).__name__}; give an FCN8s")
    sd = _strip_prefix(state_dict)
    pairs: list[tuple[str, str, tuple[int, ...] | None]] = []  # (source key, module name, reshape)
    for index, name in VGG16_LAYERS:
        if name.startswith("conv"):
            pairs += [
                (f"features.{index}.weight", f"features.{name}", None),
                (f"features.{index}.bias", f"features.{name}", None),
            ]
    if load_fc:
        c5 = model.widths[-1]
        pairs += [
            ("classifier.0.weight", "fc6", (model.fc_channels, c5, 7, 7)),
            ("classifier.0.bias", "fc6", None),
            ("classifier.3.weight", "fc7", (model.fc_channels, model.fc_channels, 1, 1)),
            ("classifier.3.bias", "fc7", None),
        ]
    missing = [key for key, _, _ in pairs if key not in sd]
    if missing:
        raise WeightsError(
            f"VGG16 state dict lacks {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}; "
            "pass torchvision.models.vgg16(...).state_dict() (or load_fc=False without classifier)"
        )
    # Check every shape before writing anything, so a failure leaves the model untouched.
    plan: list[tuple[nn.Module, str, torch.Tensor, torch.Tensor]] = []  # (owner, "weight"/"bias", old, new)
    for key, module_name, shape in pairs:
        kind = key.rsplit(".", 1)[1]
        target = getattr(_param_owner(model, module_name), kind)
        source = sd[key]
        if shape is not None and source.numel() == target.numel():
            source = source.reshape(shape)
        if tuple(source.shape) != tuple(target.shape):
            raise WeightsError(
                f"VGG16 {key} has shape {tuple(sd[key].shape)} but {module_name}.{kind} needs "
                f"{tuple(target.shape)}; build FCN8s with the default widths and fc_channels=4096"
            )
        plan.append((_param_owner(model, module_name), kind, target, source))
    # Assigned, not copied: the model's initialisation is released as each tensor is replaced,
    # and a memory-mapped file is paged in when used, so the weights are held once.
    for owner, kind, target, source in plan:
        setattr(owner, kind, nn.Parameter(placed_like(source, target), requires_grad=target.requires_grad))
    return [f"{module_name}.{key.rsplit('.', 1)[1]}" for key, module_name, _ in pairs]


def to_pac_fcn8s(
    model: FCN8s, guide_scale: float = 1e-4, kernel_type: str = "gaussian", normalize: bool = False
) -> FCN8s:
    """Hot-swap ``conv3_3``, ``conv4_3`` and ``conv5_3`` of an FCN8s for PAC guided by ``relu2_2``, in place.

    With the small default ``guide_scale`` every adapting kernel is about 1, so a trained
    FCN-8s keeps its predictions until the PAC layers are fine-tuned. State-dict keys of the
    swapped layers gain ``.pac`` (``features.conv3_3.pac.weight``). Returns ``model``.
    """
    if not isinstance(model, FCN8s):
        raise InputError(f"to_pac_fcn8s: model is a {type(model).__name__}; give an FCN8s")
    hot_swap(model, PAC_TARGETS, PAC_GUIDE, guide_scale=guide_scale, kernel_type=kernel_type, normalize=normalize)
    return model


@register_model
def pac_fcn8s_vgg16(
    num_classes: int = 21,
    guide_scale: float = 1e-4,
    kernel_type: str = "gaussian",
    normalize: bool = False,
    **fcn_kwargs,
) -> FCN8s:
    """FCN-8s (VGG16) with conv3_3/4_3/5_3 hot-swapped for PAC guided by conv2_2 (Su et al. 2019).

    Args:
        num_classes, **fcn_kwargs: architecture arguments of :class:`FCN8s`.
        guide_scale, kernel_type, normalize: see :func:`to_pac_fcn8s`.
    """
    return to_pac_fcn8s(FCN8s(num_classes=num_classes, **fcn_kwargs), guide_scale, kernel_type, normalize)
