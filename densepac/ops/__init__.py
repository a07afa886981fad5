"""PAC operators (functional and modules), PAC-CRF and guided-filter baselines."""

from .kernels import KERNEL_TYPES, adaptive_kernel
from .layers import PacConv2d, PacConvTranspose2d, PacPool2d
from .pac import pac_conv2d, pac_conv_transpose2d, pac_pool2d

__all__ = [
    "KERNEL_TYPES",
    "adaptive_kernel",
    "pac_conv2d",
    "pac_conv_transpose2d",
    "pac_pool2d",
    "PacConv2d",
    "PacConvTranspose2d",
    "PacPool2d",
]
