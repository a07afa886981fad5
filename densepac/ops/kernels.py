"""Adapting kernels of pixel-adaptive convolution.

A kernel maps the squared feature distance ``s = ||f_i - f_j||^2`` to a weight in (0, 1].
Each kernel also returns ``dK/ds`` so the PAC backward pass can recompute gradients
without storing anything.
"""

from __future__ import annotations

from typing import Callable

import torch

KernelFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _gaussian(sq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    k = torch.exp(-0.5 * sq)
    return k, -0.5 * k


def _cauchy(sq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Heavy-tailed: decays as 1/s, so distant features keep some influence.
    k = 1.0 / (1.0 + 0.5 * sq)
    return k, -0.5 * k * k


KERNELS: dict[str, KernelFn] = {
    "gaussian": _gaussian,
    "cauchy": _cauchy,
}
KERNEL_TYPES = tuple(KERNELS)


def get_kernel(kernel_type: str) -> KernelFn:
    """Return the kernel function named ``kernel_type`` (one of :data:`KERNEL_TYPES`)."""
    try:
        return KERNELS[kernel_type]
    except KeyError:
        raise ValueError(
            f"unknown kernel_type {kernel_type!r}; choose one of {', '.join(KERNEL_TYPES)}"
        ) from None


def adaptive_kernel(f_i: torch.Tensor, f_j: torch.Tensor, kernel_type: str = "gaussian") -> torch.Tensor:
    """Kernel value ``K(f_i, f_j)`` for feature maps of shape (N, C, H, W) -> (N, 1, H, W)."""
    sq = (f_i - f_j).pow(2).sum(1, keepdim=True)
    return get_kernel(kernel_type)(sq)[0]
