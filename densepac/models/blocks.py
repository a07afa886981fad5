"""Building blocks the models of both tasks share: input statistics, resizing, padding, upsamplers, conv stacks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: ImageNet RGB mean and std: pretrained encoders expect inputs normalized with them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalize(image: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std normalization of RGB (N, 3, H, W) in [0, 1]."""
    mean = image.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = image.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (image - mean) / std


def resize(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Bilinear (align_corners=False) resize of (N, C, H, W) to ``size``; no-op when already there."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "replicate") -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (N, C, H, W) at the bottom/right so H and W divide by ``multiple``.

    Bottom/right only, so pixel (0, 0) stays on the pooling grid and cropping back is
    :func:`crop_to` ``(y, (H, W))``. ``replicate`` (default) repeats the last row/column, which keeps the
    border pixels' context plausible at any size (``reflect`` fails on tiny inputs).

    Returns:
        (padded tensor, original (H, W)).
    """
    h, w = x.shape[-2:]
    # Written as multiple * ceil(size / multiple) - size, so a symbolic padded size
    # (torch.export for any size) reads as a multiple of ``multiple``; symbolic sizes pad
    # always, since testing them would fix the size.
    ph = multiple * ((h + multiple - 1) // multiple) - h
    pw = multiple * ((w + multiple - 1) // multiple) - w
    if isinstance(ph, torch.SymInt) or isinstance(pw, torch.SymInt) or ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop (N, C, H, W) at the bottom/right to ``size`` (h, w) <= (H, W): undoes :func:`pad_to_multiple`.

    A view for concrete sizes. Symbolic ones (``torch.export`` for any size) crop by a negative
    padding, so the result's size is exactly the symbolic (h, w) rather than a view's whose
    strides would fix it.
    """
    h, w = size
    if not any(isinstance(v, torch.SymInt) for v in (h, w, *x.shape[-2:])):
        return x[..., :h, :w]
    return F.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]))


def bilinear_kernel(channels: int, size: int) -> torch.Tensor:
    """(channels, channels, size, size) weights of a per-channel bilinear transposed conv.

    Channel ``c`` maps to channel ``c`` only. The separable tent ``1 - |x - centre| / f``
    (``f = ceil(size / 2)``) is the kernel for which kernel ``2f``, stride ``f``, padding
    ``f / 2`` reproduces ``align_corners=False`` bilinear upsampling.
    """
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    og = torch.arange(size, dtype=torch.float64)
    tent = 1 - (og - centre).abs() / factor
    weight = torch.zeros(channels, channels, size, size, dtype=torch.float64)
    weight[range(channels), range(channels)] = torch.outer(tent, tent)
    return weight.float()


def bilinear_upsampler(channels: int, factor: int, depthwise: bool = True) -> nn.ConvTranspose2d:
    """Bias-free x``factor`` transposed conv initialised as bilinear interpolation (learnable).

    Kernel ``2 * factor``, stride ``factor``, padding ``factor // 2``: an (N, C, h, w) input
    gives exactly (N, C, factor * h, factor * w), equal to ``F.interpolate(mode="bilinear",
    align_corners=False)`` except within ``factor / 2`` pixels of the border. ``depthwise``
    (one filter per channel) or a full layer whose weights start block-diagonal (FCN-8s).
    """
    up = nn.ConvTranspose2d(
        channels,
        channels,
        2 * factor,
        stride=factor,
        padding=factor // 2,
        groups=channels if depthwise else 1,
        bias=False,
    )
    with torch.no_grad():
        # bilinear_kernel is (C, C, k, k) block-diagonal; a depthwise layer holds (C, 1, k, k).
        up.weight.copy_(
            bilinear_kernel(1, 2 * factor).expand_as(up.weight) if depthwise else bilinear_kernel(channels, 2 * factor)
        )
    return up


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Conv (size-preserving, no bias: BN follows) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def conv_stack(in_ch: int, width: int, out_ch: int, layers: int, k: int) -> nn.Sequential:
    """``layers`` k x k convs with ReLU between them (none after the last)."""
    mods: list[nn.Module] = []
    for i in range(layers):
        mods.append(nn.Conv2d(in_ch if i == 0 else width, out_ch if i == layers - 1 else width, k, padding=k // 2))
        if i < layers - 1:
            mods.append(nn.ReLU(inplace=True))
    return nn.Sequential(*mods)
