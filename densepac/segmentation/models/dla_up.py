"""DLA-Up segmentation (Yu et al., "Deep Layer Aggregation", CVPR 2018) and its PAC variant.

Architecture (the paper's segmentation network, DLASeg):

- An encoder (default timm's ``tu-dla34`` through smp; any smp/timm or registry ``encoder``,
  see :mod:`densepac.segmentation.models.encoders`) gives stage features ``f1 .. f5`` at strides 2 .. 32.
  ``output_stride`` (2, 4, 8 or 16; default 2, as in the paper) picks the finest level that
  is aggregated: the decoder uses ``f_l .. f5`` with ``2**l = output_stride``.
- :class:`IDAUp` (iterative deep aggregation) fuses inputs at strides ``s, 2s, 4s, ...``
  into the first one's resolution: each input is projected to a common width (1x1
  conv+BN+ReLU, skipped when the width already matches), upsampled by a depthwise transposed
  convolution that starts as bilinear interpolation, and merged progressively,
  ``x = node_i(cat(x, y_i))``, by aggregation nodes (3x3 conv+BN+ReLU for segmentation). It
  returns the last node's output and every node's output.
- :class:`DLAUp` runs one IDAUp per level from deep to shallow: IDAUp ``k`` aggregates level
  ``L-2-k`` with the outputs of the previous IDAUp (already at level ``L-1-k``), so every
  upsampling is x2 and the shallowest IDAUp's last node sees every level (10 nodes for 5
  levels).
- The head is a 1x1 conv to ``num_classes`` at ``output_stride``, then bilinear
  interpolation of the logits to the input size. The paper uses a frozen bilinear
  transposed convolution here; ``F.interpolate`` equals it away from the border, is also
  right at the border, and takes any size.

Sizes: the normalized image is padded at the bottom/right (replicating the border) to a
multiple of ``2**depth`` (32), so smp encoders halve exactly and every x2 upsampling lands on
the next level's size; the logits are cropped back. An encoder whose stages do not halve
exactly (e.g. a Shape Adaptor ResNet) still works: whenever an upsampled map misses the
target level's size, it is resized bilinearly to it.

``pac_dla_up`` (our step beyond the paper) turns every upsampling transposed convolution in
the aggregation nodes into a :class:`~densepac.ops.PacConvTranspose2d` (same weights, still
depthwise), whose adapting kernel is computed on an :class:`ImageGuide`: the normalized RGB
image, area-averaged to the node's output resolution and mapped by a learned 1x1 projection
(``guide_channels`` outputs) that starts as ``guide_scale`` times the identity. With the
small default ``guide_scale`` (0.01) every gaussian kernel value is above 0.997, so a
``pac_dla_up`` starts out computing what the ``dla_up`` with the same weights computes
(:func:`to_pac_dla_up` converts a trained ``dla_up`` in place); training then learns how
strongly color edges steer the upsampling. State-dict keys of the plain model are kept, so
a ``dla_up`` checkpoint loads into ``pac_dla_up`` with only the ``guides.*`` keys missing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from densepac.check import check_int, check_num_classes
from densepac.errors import InputError
from densepac.models.blocks import bilinear_upsampler, conv_bn_relu
from densepac.models.registry import register_model
from densepac.ops.layers import PacConvTranspose2d
from densepac.segmentation.models.base import SegmentationModel
from densepac.segmentation.models.encoders import build_encoder

#: Strides of the finest aggregated level that DLA-Up accepts (the paper's ``down_ratio``).
OUTPUT_STRIDES: tuple[int, ...] = (2, 4, 8, 16)
#: Default guide scale of ``pac_dla_up``: kernel values start above 0.997 on normalized RGB.
PAC_GUIDE_SCALE = 0.01


class ImageGuide(nn.Module):
    """Guide features for a PAC layer: ``proj(area-average of the image to (H, W))``.

    ``forward(image (N, 3, Hi, Wi), size (H, W)) -> (N, guide_channels, H, W)``. The 1x1
    projection starts as ``guide_scale`` times the identity on the three color channels
    (extra channels: small random rows, so they get gradient), so the gaussian kernel starts
    close to 1. No bias: the kernel depends on feature differences only.
    """

    def __init__(self, in_channels: int = 3, guide_channels: int = 3, guide_scale: float = PAC_GUIDE_SCALE) -> None:
        super().__init__()
        self.guide_scale = float(guide_scale)
        self.proj = nn.Conv2d(in_channels, guide_channels, 1, bias=False)
        with torch.no_grad():
            nn.init.normal_(self.proj.weight, std=self.guide_scale / math.sqrt(in_channels))
            eye = min(in_channels, guide_channels)
            self.proj.weight[:eye, :, 0, 0] = torch.eye(eye, in_channels) * self.guide_scale

    def forward(self, image: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        # Pool first, then project: both are linear, and pooling 3 channels is cheaper.
        return self.proj(F.adaptive_avg_pool2d(image, tuple(size)))

    def extra_repr(self) -> str:
        return f"init guide_scale={self.guide_scale:g}"


class IDAUp(nn.Module):
    """Iterative deep aggregation of feature maps into the first one's resolution.

    Args:
        out_channels: width of the projections and of every aggregation node.
        in_channels: channels of each input, finest first.
        up_factors: each input's stride over the first one's (powers of two; the first is 1).
        node_kernel: kernel of the aggregation nodes (3 for segmentation).

    ``forward(layers, image=None) -> (x, outs)``: ``layers[i]`` is (N, in_channels[i], ~H /
    up_factors[i], ~W / up_factors[i]); ``x`` (N, out_channels, H, W) is the last node's output
    and ``outs`` every node's output (``len(layers) - 1`` maps, the last one is ``x``). ``image``
    (N, 3, Hi, Wi), the normalized input image, is needed only once :meth:`use_pac` was called.
    """

    def __init__(
        self, out_channels: int, in_channels: Sequence[int], up_factors: Sequence[int], node_kernel: int = 3
    ) -> None:
        super().__init__()
        if len(in_channels) < 2 or len(in_channels) != len(up_factors):
            raise InputError(
                f"IDAUp: give at least two inputs and one up factor each, got in_channels={in_channels!r}"
                f" and up_factors={up_factors!r}"
            )
        factors = tuple(int(f) for f in up_factors)
        if factors[0] != 1 or any(f < 1 or f & (f - 1) for f in factors):
            raise InputError(f"IDAUp: up_factors={up_factors!r}; use powers of two starting with 1, e.g. (1, 2, 2)")
        if node_kernel < 1 or node_kernel % 2 == 0:
            raise InputError(f"IDAUp: node_kernel={node_kernel!r}; use an odd size (3 for segmentation, 1 for speed)")
        self.out_channels, self.up_factors = int(out_channels), factors
        self.projs = nn.ModuleList(
            nn.Identity() if c == out_channels else conv_bn_relu(c, out_channels, 1) for c in in_channels
        )
        self.ups = nn.ModuleList(nn.Identity() if f == 1 else bilinear_upsampler(out_channels, f) for f in factors)
        # Identity placeholders keep indices aligned with ``ups``; use_pac() puts ImageGuides here.
        self.guides = nn.ModuleList(nn.Identity() for _ in factors)
        self.nodes = nn.ModuleList(
            conv_bn_relu(2 * out_channels, out_channels, node_kernel) for _ in range(len(factors) - 1)
        )

    @property
    def is_pac(self) -> bool:
        return any(isinstance(up, PacConvTranspose2d) for up in self.ups)

    def use_pac(
        self,
        guide_channels: int = 3,
        guide_scale: float = PAC_GUIDE_SCALE,
        kernel_type: str = "gaussian",
        normalize: bool = False,
    ) -> IDAUp:
        """Turn every upsampler into a PAC transposed conv (same weights) guided by the image, in place."""
        for i, up in enumerate(self.ups):
            if isinstance(up, nn.ConvTranspose2d):
                self.ups[i] = PacConvTranspose2d.from_conv(up, kernel_type=kernel_type, normalize=normalize)
                self.guides[i] = ImageGuide(3, guide_channels, guide_scale).to(up.weight)
        return self

    def _upsample(self, i: int, x: torch.Tensor, size: tuple[int, int], image: torch.Tensor | None) -> torch.Tensor:
        """``ups[i](x)`` brought to ``size``."""
        up, f = self.ups[i], self.up_factors[i]
        if f > 1:
            # The transposed conv's own size is f * (h, w); it reaches up to f - 1 pixels more
            # (output_padding). Further off (encoders that do not halve), resize afterwards.
            natural = (f * x.shape[-2], f * x.shape[-1])
            out = tuple(t if n <= t < n + f else n for t, n in zip(size, natural))
            if isinstance(up, PacConvTranspose2d):
                if image is None:
                    raise InputError("a PAC IDAUp needs the normalized image: call forward(layers, image)")
                x = up(x, self.guides[i](image, out))
            else:
                x = up(x, output_size=list(out))
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x

    def forward(
        self, layers: Sequence[torch.Tensor], image: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if len(layers) != len(self.projs):
            raise InputError(f"IDAUp was built for {len(self.projs)} inputs, got {len(layers)}")
        size = (layers[0].shape[-2], layers[0].shape[-1])
        x = self.projs[0](layers[0])
        outs: list[torch.Tensor] = []
        for i in range(1, len(layers)):
            y = self._upsample(i, self.projs[i](layers[i]), size, image)
            x = self.nodes[i - 1](torch.cat([x, y], dim=1))
            outs.append(x)
        return x, outs

    def extra_repr(self) -> str:
        return f"out_channels={self.out_channels}, up_factors={self.up_factors}"


class DLAUp(nn.Module):
    """Aggregates pyramid levels from deep to shallow with one :class:`IDAUp` per level.

    Args:
        channels: channels of the levels, finest first; level ``i`` is at ``2**i`` times the
            first level's stride.
        node_kernel: kernel of the aggregation nodes.

    ``forward(layers, image=None) -> (N, channels[0], H, W)`` at the first level's size.
    """

    def __init__(self, channels: Sequence[int], node_kernel: int = 3) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) < 2:
            raise InputError(f"DLAUp: needs at least two levels, got channels={channels!r}")
        self.channels = tuple(channels)
        widths = list(channels)  # current width of each level as the IDAUps rewrite them
        idas = []
        for j in range(len(channels) - 2, -1, -1):
            # Levels deeper than j have been aggregated to level j + 1 by the previous IDAUp
            # (the deepest is at j + 1 already), so each needs one x2 upsampling.
            idas.append(IDAUp(channels[j], widths[j:], [1] + [2] * (len(channels) - 1 - j), node_kernel))
            widths[j + 1 :] = [channels[j]] * (len(channels) - 1 - j)
        self.idas = nn.ModuleList(idas)

    def forward(self, layers: Sequence[torch.Tensor], image: torch.Tensor | None = None) -> torch.Tensor:
        if len(layers) != len(self.channels):
            raise InputError(f"DLAUp was built for {len(self.channels)} levels, got {len(layers)}")
        layers = list(layers)
        x = layers[-1]
        for k, ida in enumerate(self.idas):
            j = len(layers) - 2 - k
            x, outs = ida(layers[j:], image)
            layers[j + 1 :] = outs
        return x


class DLAUpSeg(SegmentationModel):
    """DLA-Up segmentation: encoder -> :class:`DLAUp` -> 1x1 classifier -> bilinear to input size.

    ``forward(image (N, 3, H, W) RGB in [0, 1]) -> logits (N, num_classes, H, W)``, any H, W.

    Args:
        encoder_name: smp/timm encoder (``tu-dla34``, ``resnet18``, ...), a registry encoder
            name, or an encoder module (smp protocol); built without downloading weights.
        num_classes: output classes (21 for PASCAL VOC).
        output_stride: stride of the finest aggregated level, 2, 4, 8 or 16 (the paper's
            ``down_ratio``, 2 for segmentation); smaller is finer and costlier.
        node_kernel: kernel of the aggregation nodes (3 in the paper's segmentation net).
        encoder_depth: stages of a named encoder (5: strides up to 32).
        encoder_kwargs: further arguments of a registry encoder's factory.
    """

    def __init__(
        self,
        encoder_name: str | nn.Module = "tu-dla34",
        num_classes: int = 21,
        output_stride: int = 2,
        node_kernel: int = 3,
        encoder_depth: int = 5,
        encoder_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if isinstance(output_stride, bool) or output_stride not in OUTPUT_STRIDES:
            raise InputError(
                f"dla_up: output_stride={output_stride!r}; use one of {OUTPUT_STRIDES} "
                "(stride of the finest aggregated level, 2 in the paper)"
            )
        if isinstance(node_kernel, bool) or not isinstance(node_kernel, int) or node_kernel < 1 or node_kernel % 2 == 0:
            raise InputError(f"dla_up: node_kernel={node_kernel!r}; use an odd size such as 3 or 1")
        self.encoder = build_encoder(encoder_name, in_channels=3, depth=encoder_depth, **(encoder_kwargs or {}))
        depth = len(self.encoder.out_channels) - 1
        self.first_level = int(math.log2(output_stride))
        channels = [int(c) for c in self.encoder.out_channels[self.first_level :]]
        if depth - self.first_level < 1:
            raise InputError(
                f"dla_up: output_stride={output_stride} leaves fewer than two of the encoder's {depth} "
                f"stages to aggregate; use output_stride <= {2 ** (depth - 1)}"
            )
        if min(channels) < 1:
            raise InputError(
                f"dla_up: encoder {encoder_name!r} has no features at stride "
                f"{2 ** (self.first_level + channels.index(min(channels)))}; use a larger output_stride"
            )
        self.num_classes, self.output_stride, self.node_kernel = num_classes, output_stride, node_kernel
        self.encoder_name = encoder_name if isinstance(encoder_name, str) else type(encoder_name).__name__
        # Pad to the deepest stride so every stage of a standard encoder halves exactly.
        self.pad_multiple = 2**depth
        self.decoder = DLAUp(channels, node_kernel)
        self.head = nn.Conv2d(channels[0], num_classes, 1)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(x)[self.first_level :], x))

    def extra_repr(self) -> str:
        return (
            f"encoder_name={self.encoder_name!r}, num_classes={self.num_classes}, "
            f"output_stride={self.output_stride}, node_kernel={self.node_kernel}"
        )


def to_pac_dla_up(
    model: DLAUpSeg,
    guide_channels: int = 3,
    guide_scale: float = PAC_GUIDE_SCALE,
    kernel_type: str = "gaussian",
    normalize: bool = False,
) -> DLAUpSeg:
    """Make every aggregation-node upsampler of ``model`` a PAC layer guided by the image, in place.

    The transposed convolutions keep their weights and state-dict keys; each gains an
    :class:`ImageGuide` (keys ``...guides.<i>.proj.weight``). With the default small
    ``guide_scale`` and ``normalize=False`` the model's output barely changes, so a trained
    ``dla_up`` can be fine-tuned as a PAC model. ``normalize=True`` divides by the kernel sum
    and does not start close to the plain model. Returns ``model``.
    """
    if not isinstance(model, DLAUpSeg):
        raise InputError(f"to_pac_dla_up: model is a {type(model).__name__}; give a DLAUpSeg (dla_up)")
    check_int(guide_channels, "pac_dla_up: guide_channels (3: RGB)", minimum=1)
    if not (isinstance(guide_scale, (int, float)) and 0 < guide_scale < math.inf):
        raise InputError(f"pac_dla_up: guide_scale={guide_scale!r} must be a positive number, e.g. {PAC_GUIDE_SCALE}")
    try:
        for ida in model.decoder.idas:
            ida.use_pac(guide_channels, guide_scale, kernel_type, normalize)
    except ValueError as e:  # unknown kernel_type
        raise InputError(f"pac_dla_up: {e}") from None
    return model


@register_model
def dla_up(
    encoder_name: str | nn.Module = "tu-dla34",
    num_classes: int = 21,
    output_stride: int = 2,
    node_kernel: int = 3,
    encoder_depth: int = 5,
    encoder_kwargs: dict[str, Any] | None = None,
) -> DLAUpSeg:
    """DLA-Up segmentation (Yu et al. 2018) on any encoder (default tu-dla34); see :class:`DLAUpSeg`."""
    return DLAUpSeg(encoder_name, num_classes, output_stride, node_kernel, encoder_depth, encoder_kwargs)


@register_model
def pac_dla_up(
    encoder_name: str | nn.Module = "tu-dla34",
    num_classes: int = 21,
    output_stride: int = 2,
    node_kernel: int = 3,
    guide_channels: int = 3,
    guide_scale: float = PAC_GUIDE_SCALE,
    kernel_type: str = "gaussian",
    normalize: bool = False,
    encoder_depth: int = 5,
    encoder_kwargs: dict[str, Any] | None = None,
) -> DLAUpSeg:
    """DLA-Up whose aggregation upsamplers are PAC layers guided by the image; see :func:`to_pac_dla_up`."""
    model = DLAUpSeg(encoder_name, num_classes, output_stride, node_kernel, encoder_depth, encoder_kwargs)
    return to_pac_dla_up(model, guide_channels, guide_scale, kernel_type, normalize)
