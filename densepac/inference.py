"""What running any model on user data needs: a device, and a registry model with its weights."""

from __future__ import annotations

import torch
from torch import nn

from densepac.errors import InputError


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an unavailable CUDA request is an InputError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device} asked for, but no CUDA device is available; use --device cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None


def load_model_for_inference(name: str | None, weights=None, **kwargs) -> nn.Module:
    """A registry model with its shipped weights, or with ``weights``.

    A weights file with its model card beside it (``NAME.json``, as ``densepac train
    --export`` writes) supplies the architecture arguments, and the model name when
    ``name`` is None. A learned model without any weights is refused.
    """
    from pathlib import Path

    from densepac.models import create_model, list_weights
    from densepac.models.weights import WeightsCard, shipped_weights_of

    if weights is None and name is not None and name not in list_weights():
        # Weights shipped under another name than the model's (a CRF-wrapped model's card).
        weights = shipped_weights_of(f"{name}+crf" if kwargs.get("crf") and not name.endswith("+crf") else name)
    card_path = Path(weights).with_suffix(".json") if weights is not None else None
    if card_path is not None and card_path.is_file():
        card = WeightsCard.from_json(card_path)
        name = name or card.arch
        if name.removesuffix("+crf") == card.arch.removesuffix("+crf"):
            kwargs = {**card.kwargs, **kwargs}
    if name is None:
        raise InputError("no model given; pass --model NAME (see `densepac models`)")
    pretrained = weights is None and name in list_weights()
    model = create_model(name, pretrained=pretrained, weights=weights, **kwargs)
    if not pretrained and weights is None and any(True for _ in model.parameters()):
        if model.task == "segmentation":
            raise InputError(
                f"model {name!r} has no shipped weights; pass --weights FILE (a densepac or torchvision "
                "checkpoint) or --weights torchvision:ENUM_NAME, or fine-tune one with `densepac finetune`"
            )
        raise InputError(
            f"model {name!r} has no shipped weights; pass --weights FILE or train it with `densepac train`"
        )
    return model
