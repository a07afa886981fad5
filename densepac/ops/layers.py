"""``nn.Module`` wrappers of the PAC ops: they hold parameters and hyper-parameters only."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from densepac.errors import InputError, InputTypeError
from densepac.ops.kernels import get_kernel
from densepac.ops.pac import IntOr2, pac_conv2d, pac_conv_transpose2d, pac_pool2d


def _int_padding(conv: nn.Module) -> tuple[int, int]:
    """Numeric padding of a torch conv, resolving ``"valid"``/``"same"`` where symmetric."""
    pad = conv.padding
    if pad == "valid":
        return (0, 0)
    if pad == "same":
        k, d = _pair(conv.kernel_size), _pair(conv.dilation)
        total = [di * (ki - 1) for ki, di in zip(k, d)]
        if any(t % 2 for t in total):
            raise InputError(f"cannot convert asymmetric padding='same' of {conv} to a PAC layer")
        return (total[0] // 2, total[1] // 2)
    return _pair(pad)


class _PacConvBase(nn.Module):
    """Weight/bias storage and initialisation shared by the PAC convolutions."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOr2,
        stride: IntOr2,
        padding: IntOr2,
        dilation: IntOr2,
        groups: int,
        bias: bool,
        padding_mode: str,
        kernel_type: str,
        normalize: bool,
        transposed: bool,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        _check_padding_mode(padding_mode)
        get_kernel(kernel_type)
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise InputError(
                f"in_channels {in_channels} and out_channels {out_channels} must divide by groups {groups}"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        weight_shape = (
            (in_channels, out_channels // groups) if transposed else (out_channels, in_channels // groups)
        ) + self.kernel_size
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(weight_shape, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.kernel_type = kernel_type
        self.normalize = normalize
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same scheme as torch's convolutions, so a PAC layer trains like the layer it mirrors.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.weight.shape[2] * self.weight.shape[3]
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound)

    def _copy_from(self, conv: nn.Module) -> None:
        with torch.no_grad():
            self.weight.copy_(conv.weight)
            if self.bias is not None:
                self.bias.copy_(conv.bias)

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s + f", kernel_type={self.kernel_type!r}, normalize={self.normalize}"


def _check_padding_mode(padding_mode: str) -> None:
    if padding_mode != "zeros":
        raise InputError(f"PAC layers support padding_mode='zeros' only, got {padding_mode!r}")


class PacConv2d(_PacConvBase):
    """Pixel-adaptive ``nn.Conv2d``: ``forward(input (N,Cin,H,W), guide (N,Cg,H,W))``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOr2,
        stride: IntOr2 = 1,
        padding: IntOr2 = 0,
        dilation: IntOr2 = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
        kernel_type: str = "gaussian",
        normalize: bool = False,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            kernel_type,
            normalize,
            False,
            device,
            dtype,
        )

    def forward(self, input: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        return pac_conv2d(
            input,
            guide,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.kernel_type,
            self.normalize,
            groups=self.groups,
        )

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, kernel_type: str = "gaussian", normalize: bool = False) -> PacConv2d:
        """A PAC layer with ``conv``'s geometry and an exact copy of its weights."""
        if not isinstance(conv, nn.Conv2d):
            raise InputTypeError(f"expected nn.Conv2d, got {type(conv).__name__}")
        _check_padding_mode(conv.padding_mode)
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            _int_padding(conv),
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
            kernel_type=kernel_type,
            normalize=normalize,
        )
        layer._copy_from(conv)
        return layer


class PacConvTranspose2d(_PacConvBase):
    """Pixel-adaptive ``nn.ConvTranspose2d``: ``forward(input, guide)`` with the guide at output size.

    When the guide is up to ``stride - 1`` pixels larger than the default output, the extra
    rows/columns are produced as with ``output_padding`` (like ``output_size`` in torch).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOr2,
        stride: IntOr2 = 1,
        padding: IntOr2 = 0,
        output_padding: IntOr2 = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: IntOr2 = 1,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
        kernel_type: str = "gaussian",
        normalize: bool = False,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            kernel_type,
            normalize,
            True,
            device,
            dtype,
        )
        self.output_padding = _pair(output_padding)

    def output_size(
        self, input_size: tuple[int, int], output_padding: tuple[int, int] | None = None
    ) -> tuple[int, int]:
        """Output (H, W) for an input of ``input_size``."""
        op = self.output_padding if output_padding is None else output_padding
        return tuple(
            (n - 1) * s - 2 * p + d * (k - 1) + o + 1
            for n, s, p, d, k, o in zip(input_size, self.stride, self.padding, self.dilation, self.kernel_size, op)
        )

    def forward(self, input: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        base = self.output_size(tuple(input.shape[-2:]), (0, 0))
        op = tuple(g - b for g, b in zip(guide.shape[-2:], base))
        limit = tuple(max(s, d) for s, d in zip(self.stride, self.dilation))
        if any(o < 0 or o >= m for o, m in zip(op, limit)):
            raise InputError(
                f"guide size {tuple(guide.shape[-2:])} does not fit input {tuple(input.shape[-2:])}: "
                f"expected {base} plus at most {tuple(m - 1 for m in limit)}"
            )
        return pac_conv_transpose2d(
            input,
            guide,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            op,
            self.dilation,
            self.kernel_type,
            self.normalize,
            groups=self.groups,
        )

    @classmethod
    def from_conv(
        cls, conv: nn.ConvTranspose2d, kernel_type: str = "gaussian", normalize: bool = False
    ) -> PacConvTranspose2d:
        """A PAC layer with ``conv``'s geometry and an exact copy of its weights."""
        if not isinstance(conv, nn.ConvTranspose2d):
            raise InputTypeError(f"expected nn.ConvTranspose2d, got {type(conv).__name__}")
        _check_padding_mode(conv.padding_mode)
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.output_padding,
            conv.groups,
            conv.bias is not None,
            conv.dilation,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
            kernel_type=kernel_type,
            normalize=normalize,
        )
        layer._copy_from(conv)
        return layer


class PacPool2d(nn.Module):
    """Pixel-adaptive average pooling: ``forward(input (N,C,H,W), guide (N,Cg,H,W))``."""

    def __init__(
        self,
        kernel_size: IntOr2,
        stride: IntOr2 = 1,
        padding: IntOr2 = 0,
        dilation: IntOr2 = 1,
        kernel_type: str = "gaussian",
    ) -> None:
        super().__init__()
        get_kernel(kernel_type)
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        self.kernel_type = kernel_type

    def forward(self, input: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        return pac_pool2d(input, guide, self.kernel_size, self.stride, self.padding, self.dilation, self.kernel_type)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, kernel_type={self.kernel_type!r}"
        )
