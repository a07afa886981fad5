"""Encoders for segmentation decoders: our registry's ``encoder`` models or any smp/timm encoder.

An encoder follows segmentation_models_pytorch's protocol: ``forward(x (N, C, H, W)) ->
[x, f1, ..., f_depth]`` (the input first, then one feature map per stage, each about half the
previous size) and an ``out_channels`` sequence of the same length. Decoders in densepac take
such an encoder by name (:func:`build_encoder`) or as a module, so a registry encoder (e.g. a
Shape Adaptor ResNet, whose stages need not halve exactly) and every smp/timm encoder
(``resnet18``, ``tu-dla34``, ...) plug into the same decoders.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from torch import nn

from densepac.errors import InputError
from densepac.models.registry import create_model, list_models


def build_encoder(name: str | nn.Module, in_channels: int = 3, depth: int = 5, **kwargs: Any) -> nn.Module:
    """An encoder by name, without downloading weights.

    Args:
        name: a registry name of task ``encoder`` (:func:`densepac.list_models`), an smp
            encoder name (``resnet18``, ``tu-dla34`` for timm's, ...), or an encoder module,
            returned as is after checking it has ``out_channels``.
        in_channels: input channels (3 for RGB).
        depth: number of stages (smp encoders: 1 to 5).
        **kwargs: passed to a registry encoder's factory.
    """
    if isinstance(name, nn.Module):
        encoder = name
    elif name in list_models(task="encoder"):
        encoder = create_model(name, in_channels=in_channels, depth=depth, **kwargs)
    else:
        if kwargs:
            raise InputError(f"encoder {name!r}: extra arguments {sorted(kwargs)} apply to registry encoders only")
        import segmentation_models_pytorch as smp  # slow import (timm): only when needed

        try:
            encoder = smp.encoders.get_encoder(name, in_channels=in_channels, depth=depth, weights=None)
        except (KeyError, ValueError, RuntimeError):
            known = [*smp.encoders.get_encoder_names(), *list_models(task="encoder")]
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else "e.g. 'resnet18', 'tu-dla34'"
            raise InputError(f"unknown encoder {name!r}: {hint}") from None
    if not isinstance(getattr(encoder, "out_channels", None), Sequence):
        raise InputError(
            f"encoder {type(encoder).__name__} has no out_channels list; it must follow the smp "
            "encoder protocol (forward returns [input, stage1, ..., stageN])"
        )
    return encoder
