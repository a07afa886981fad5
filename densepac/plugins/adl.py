"""Attention-based dropout layer (ADL, Choe & Shim, CVPR 2019): parameter-free, identity at eval.

Self-attention is the channel mean of the features. Each training sample is multiplied
either by a *drop mask* that hides its most activated region (attention >= threshold x the
sample's maximum), with probability ``drop_rate``, or else by an *importance map*
``sigmoid(attention)``. Hiding the most discriminative part pushes the network to use the
rest of the object as well.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from densepac.errors import InputError


def adl(
    x: torch.Tensor,
    drop_rate: float = 0.75,
    threshold: float = 0.9,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Apply ADL to features (N, C, H, W); identity when ``training`` is False.

    Args:
        drop_rate: probability, per sample, of the drop mask instead of the importance map.
        threshold: fraction of the per-sample maximum attention above which pixels are dropped.
        generator: RNG for the per-sample choice (default: torch's global one).
    """
    if x.dim() != 4:
        raise InputError(f"ADL expects (N, C, H, W) features, got shape {tuple(x.shape)}")
    if not 0.0 <= drop_rate <= 1.0 or not 0.0 <= threshold <= 1.0:
        raise InputError(f"drop_rate {drop_rate} and threshold {threshold} must lie in [0, 1]")
    if not training:
        return x
    attention = x.mean(1, keepdim=True)
    peak = attention.amax((2, 3), keepdim=True)
    drop_mask = (attention < threshold * peak).to(x.dtype)
    importance = torch.sigmoid(attention)
    choose_drop = torch.rand(x.shape[0], 1, 1, 1, device=x.device, generator=generator) < drop_rate
    return x * torch.where(choose_drop, drop_mask, importance)


class ADL(nn.Module):
    """Module form of :func:`adl`; no parameters, follows the input's dtype and device."""

    def __init__(self, drop_rate: float = 0.75, threshold: float = 0.9) -> None:
        super().__init__()
        if not 0.0 <= drop_rate <= 1.0 or not 0.0 <= threshold <= 1.0:
            raise InputError(f"drop_rate {drop_rate} and threshold {threshold} must lie in [0, 1]")
        self.drop_rate, self.threshold = drop_rate, threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adl(x, self.drop_rate, self.threshold, self.training)

    def extra_repr(self) -> str:
        return f"drop_rate={self.drop_rate}, threshold={self.threshold}"


class ADLHook:
    """Forward hook that applies :func:`adl` to a module's output while that module trains.

    A hook rather than a wrapper module, so state-dict keys stay those of the model without
    ADL (weights load both ways) and the train/eval switch of the model drives it.
    """

    def __init__(self, drop_rate: float = 0.75, threshold: float = 0.9) -> None:
        ADL(drop_rate, threshold)  # validates
        self.drop_rate, self.threshold = drop_rate, threshold

    def __call__(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise InputError(
                f"ADL after {type(module).__name__}: its output must be (N, C, H, W) features; "
                "pick a layer or stage that returns a feature map"
            )
        return adl(output, self.drop_rate, self.threshold, module.training)

    def __repr__(self) -> str:
        return f"ADLHook(drop_rate={self.drop_rate}, threshold={self.threshold})"


def adl_layers(model: nn.Module) -> list[str]:
    """Names of the submodules of ``model`` whose output goes through ADL."""
    return [name for name, m in model.named_modules() if any(isinstance(h, ADLHook) for h in m._forward_hooks.values())]


def insert_adl(model: nn.Module, stages: Sequence[str], drop_rate: float = 0.75, threshold: float = 0.9) -> list[str]:
    """Apply ADL to the output of each named submodule (in place); returns the names.

    The model's parameters and state-dict keys are unchanged: ADL is a forward hook
    (:class:`ADLHook`), active in training mode only.
    """
    modules = dict(model.named_modules())
    missing = [s for s in stages if s not in modules or s == ""]
    if missing:
        raise InputError(
            f"no submodule named {missing[0]!r} in {type(model).__name__}; "
            f"e.g. {', '.join(n for n in list(modules)[1:6])}"
        )
    already = set(adl_layers(model)) & set(stages)
    if already:
        raise InputError(f"{sorted(already)[0]!r} already has ADL; insert it once per layer")
    hook = ADLHook(drop_rate, threshold)
    for name in stages:
        modules[name].register_forward_hook(hook)
    return list(stages)
