"""Adapting kernels of pixel-adaptive convolution.

A kernel maps the squared feature distance ``s = ||f_i - f_j||^2`` to a weight in (0, 1].
Each kernel also returns ``dK/ds`` so the PAC backward pass can recompute gradients
without storing anything.

``kernel(s, ref)`` returns ``K(s) / K(ref)`` and its derivative instead, computed without
forming ``K(ref)`` (which underflows to 0 for large ``ref``). Normalized PAC divides by a sum
of kernel values, so it may scale them all by one constant per output pixel: with ``ref`` the
smallest distance among a pixel's taps the nearest neighbour weighs exactly 1 and the
normalizer is at least 1, however far apart the guide features are.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from densepac.errors import InputError

KernelFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def _gaussian(sq: torch.Tensor, ref: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    k = torch.exp(-0.5 * (sq if ref is None else sq - ref))
    return k, -0.5 * k


def _cauchy(sq: torch.Tensor, ref: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    # Heavy-tailed: decays as 1/s, so distant features keep some influence.
    denom = 1.0 + 0.5 * sq
    if ref is None:
        k = 1.0 / denom
        return k, -0.5 * k * k
    k = (1.0 + 0.5 * ref) / denom  # K(s) / K(ref), no tiny intermediate
    return k, -0.5 * k / denom


KERNELS: dict[str, KernelFn] = {
    "gaussian": _gaussian,
    "cauchy": _cauchy,
}
KERNEL_TYPES = tuple(KERNELS)


def get_kernel(kernel_type: str) -> KernelFn:
    """Return the kernel function named ``kernel_type`` (one of :data:`KERNEL_TYPES`).

    It is called as ``kernel(sq)`` -> ``(K, dK/dsq)``, or ``kernel(sq, ref)`` ->
    ``(K(sq) / K(ref), dK(sq)/dsq / K(ref))`` for ``ref <= sq`` (see the module docstring).
    """
    try:
        return KERNELS[kernel_type]
    except KeyError:
        raise InputError(f"unknown kernel_type {kernel_type!r}; choose one of {', '.join(KERNEL_TYPES)}") from None


def adaptive_kernel(f_i: torch.Tensor, f_j: torch.Tensor, kernel_type: str = "gaussian") -> torch.Tensor:
    """Kernel value ``K(f_i, f_j)`` for feature maps of shape (N, C, H, W) -> (N, 1, H, W)."""
    sq = (f_i - f_j).pow(2).sum(1, keepdim=True)
    return get_kernel(kernel_type)(sq)[0]
