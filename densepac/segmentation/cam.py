"""Where a segmentation model looks: attention maps and class activation maps (CAMs).

Two maps, both ``(N, ..., H, W)`` at the image's size, min-max normalized to ``[0, 1]`` per
sample (and per class), computed from the features of one layer captured by a forward hook:

- :func:`attention_map`: the channel mean of the layer's features, the self-attention of
  ADL (:mod:`densepac.plugins.adl`, Choe & Shim 2019). Class-agnostic, no gradients: what the
  layer responds to most strongly.
- :func:`class_activation_maps`: Seg-Grad-CAM (Vinogradova et al. 2020), Grad-CAM for dense
  outputs. For class ``c`` the score is the sum of the class-``c`` logits over the pixels
  predicted ``c`` (over every pixel when none is), each channel ``k`` of the features ``A``
  is weighted by the mean gradient ``alpha_k = mean_p d score / d A_k(p)`` and the map is
  ``ReLU(sum_k alpha_k A_k)``. When the logits are a 1x1 convolution ``W`` of the features
  (FCN's ``score_fr``), this is the classic CAM of Zhou et al. 2016, ``ReLU(W_c . A)`` up to
  a positive factor.

The layer is a name of ``model.named_modules()`` or, by default, :func:`feature_layer`: the
deepest feature layer, i.e. the module output of the smallest spatial size (last in
execution order among equals), class-score layers (``num_classes`` channels) and dropout
skipped; ``relu7`` for FCN-8s, the encoder's last stage for U-Net-like models.

Features are resized to the image bilinearly (``align_corners=False``) on the assumption
that the layer's grid starts at the image's top-left pixel with an integer stride ``s``,
``ceil(H / s) == h`` (a power of two when several fit), the part beyond the image being
bottom/right padding (as in FCN-8s, which pads to a multiple of 32) that is cropped off.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from densepac.errors import InputError, InputTypeError

__all__ = ["attention_map", "class_activation_maps", "feature_layer"]

# Identity at inference and never "the features": skipped when looking for the default layer.
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def _check(model: nn.Module, image: torch.Tensor) -> None:
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if getattr(model, "task", "segmentation") != "segmentation":
        raise InputTypeError(
            f"{getattr(model, 'model_name', type(model).__name__)!r} is a {model.task} model; "
            "attention and class activation maps need a segmentation model"
        )
    if not isinstance(image, torch.Tensor):
        raise InputTypeError(f"image must be a torch.Tensor (N, 3, H, W), got {type(image).__name__}")
    if image.dim() != 4 or image.shape[1] != 3 or image.shape[-2] < 1 or image.shape[-1] < 1:
        raise InputError(f"image must be (N, 3, H, W) RGB in [0, 1], got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise InputTypeError(f"image must be a float tensor in [0, 1], got {image.dtype}")


def _module(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if not isinstance(layer, str) or layer not in modules or layer == "":
        some = ", ".join(n for n in list(modules)[1:] if "." not in n)[:200]
        raise InputError(
            f"no layer named {layer!r} in {type(model).__name__}; "
            f"give a name from model.named_modules() (top level: {some})"
        )
    return modules[layer]


def _num_classes(model: nn.Module) -> int | None:
    k = getattr(model, "num_classes", None)
    return k if isinstance(k, int) else None


def _forward_capture(
    model: nn.Module, image: torch.Tensor, layer: str | None
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(logits, features (N, C, h, w) of ``layer``, the layer's name) from one forward pass."""
    captured: dict[str, tuple[str, torch.Tensor]] = {}
    handles = []
    if layer is not None:

        def keep(module, args, output, name=layer):
            if isinstance(output, torch.Tensor):
                captured["best"] = (name, output)  # a module run twice: its last call wins

        handles.append(_module(model, layer).register_forward_hook(keep))
    else:
        k = _num_classes(model)

        def offer(module, args, output, name=""):
            if not (isinstance(output, torch.Tensor) and output.dim() == 4 and output.is_floating_point()):
                return
            if output.shape[-2] * output.shape[-1] == 1 < image.shape[-2] * image.shape[-1]:
                return  # a global-pooling branch (ASPP, LR-ASPP): no spatial attention to show
            slot = "scores" if output.shape[1] == k else "best"
            held = captured.get(slot)
            # Smallest spatial size wins; among equals, the later one (deeper).
            if held is None or output.shape[-2] * output.shape[-1] <= held[1].shape[-2] * held[1].shape[-1]:
                captured[slot] = (name, output)

        for name, module in model.named_modules():
            if name and not list(module.children()) and not isinstance(module, _DROPOUT):
                handles.append(module.register_forward_hook(lambda m, a, o, name=name: offer(m, a, o, name)))
    try:
        logits = model(image)
    finally:
        for h in handles:
            h.remove()
    if not isinstance(logits, torch.Tensor) or logits.dim() != 4:
        raise InputTypeError(f"{type(model).__name__} returned {type(logits).__name__}, not (N, K, H, W) logits")
    found = captured.get("best") or captured.get("scores")
    if found is None and layer is not None:
        raise InputError(
            f"layer {layer!r} of {type(model).__name__} did not run or returned no tensor; "
            "name a convolution or activation layer that forward() uses"
        )
    if found is None:
        raise InputError(f"no layer of {type(model).__name__} returned (N, C, h, w) features; pass layer=NAME")
    name, feats = found
    if feats.dim() != 4:
        raise InputError(
            f"layer {name!r} outputs shape {tuple(feats.shape)}, not (N, C, h, w) features; "
            "name a convolution or activation layer"
        )
    return logits, feats, name


def _stride(h: int, w: int, H: int, W: int) -> int:
    """The integer stride ``s`` with ``ceil(H / s) == h`` and ``ceil(W / s) == w``, a power of two if one fits."""
    lo, hi = 1, H * W
    for n, N in ((h, H), (w, W)):
        lo = max(lo, math.ceil(N / n))
        if n > 1:
            hi = min(hi, math.ceil(N / (n - 1)) - 1)
    if lo > hi:  # no exact fit: the grid does not tile the image evenly
        return lo
    power = 2 ** math.ceil(math.log2(lo))
    return power if power <= hi else lo


def _to_image(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, h, w) maps on the layer's grid -> (N, C, H, W) on the image's pixels."""
    (h, w), (H, W) = maps.shape[-2:], size
    if (h, w) == (H, W):
        return maps
    s = _stride(h, w, H, W)
    if s > 1:
        maps = F.interpolate(maps, size=(h * s, w * s), mode="bilinear", align_corners=False)
    return maps[..., :H, :W]  # a grid larger than the image covers its bottom/right padding


def _normalize(maps: torch.Tensor) -> torch.Tensor:
    """Min-max to [0, 1] over the last two axes; non-finite -> 0, a constant map -> 0."""
    m = torch.nan_to_num(maps.float(), nan=0.0, posinf=0.0, neginf=0.0)
    low = m.amin(dim=(-2, -1), keepdim=True)
    span = m.amax(dim=(-2, -1), keepdim=True) - low
    return torch.where(span > 0, (m - low) / span.clamp_min(torch.finfo(m.dtype).tiny), torch.zeros_like(m))


def feature_layer(model: nn.Module, image: torch.Tensor) -> str:
    """The name of the layer :func:`attention_map` uses by default for ``model`` (see the module doc)."""
    _check(model, image)
    with torch.inference_mode():
        return _forward_capture(model, image, None)[2]


def attention_map(model: nn.Module, image: torch.Tensor, layer: str | None = None) -> torch.Tensor:
    """ADL-style attention: channel mean of ``layer``'s features, at the image size, in [0, 1].

    Args:
        model: a segmentation model, ``model(image) -> (N, K, H, W)`` logits. Run as it is
            (call ``model.eval()`` first for inference behaviour).
        image: (N, 3, H, W) float RGB in [0, 1], on the model's device.
        layer: a name from ``model.named_modules()``; None: :func:`feature_layer`.

    Returns:
        (N, H, W) float32, min-max normalized per sample (a constant map is all 0).
    """
    _check(model, image)
    with torch.inference_mode():
        _, feats, _ = _forward_capture(model, image, layer)
        att = feats.float().mean(1, keepdim=True)
        return _normalize(_to_image(att, tuple(image.shape[-2:])))[:, 0]


def class_activation_maps(
    model: nn.Module, image: torch.Tensor, layer: str | None = None, classes: int | Sequence[int] | None = None
) -> torch.Tensor:
    """Seg-Grad-CAM maps of ``classes`` (default: all) at the image size, in [0, 1].

    Args:
        model, image, layer: as for :func:`attention_map`. Gradients flow to the features
            even when the model's parameters are frozen; the parameters' ``.grad`` is untouched.
        classes: a class index or a sequence of them, in ``[0, K)``.

    Returns:
        (N, len(classes), H, W) float32 (``len`` 1 for an int), each map min-max normalized
        per sample; a class with no positive evidence anywhere gives an all-0 map.
    """
    _check(model, image)
    with torch.inference_mode(False), torch.enable_grad():
        x = image.detach().clone().requires_grad_(True)  # so the features are in a graph
        logits, feats, name = _forward_capture(model, x, layer)
        k = logits.shape[1]
        chosen = list(range(k)) if classes is None else [classes] if isinstance(classes, int) else list(classes)
        if not chosen or any(isinstance(c, bool) or not isinstance(c, int) for c in chosen):
            raise InputTypeError(f"classes must be an int or a non-empty sequence of ints, got {classes!r}")
        bad = [c for c in chosen if not 0 <= c < k]
        if bad:
            raise InputError(f"classes {bad} are not class indices of a {k}-class model; use 0 to {k - 1}")
        if not feats.requires_grad:
            raise InputError(f"layer {name!r} does not depend on the image; name a layer inside the network")
        predicted = logits.detach().argmax(1)  # (N, H, W)
        maps = []
        for c in chosen:
            mask = (predicted == c).to(logits.dtype)
            none = mask.flatten(1).sum(1) == 0
            mask[none] = 1.0  # class never predicted in that image: explain its logits everywhere
            score = (logits[:, c] * mask).sum()
            (grad,) = torch.autograd.grad(score, feats, retain_graph=True)
            alpha = grad.float().mean(dim=(-2, -1), keepdim=True)  # (N, C, 1, 1)
            maps.append(F.relu((alpha * feats.detach().float()).sum(1, keepdim=True)))
        cams = torch.cat(maps, 1)
    return _normalize(_to_image(cams, tuple(image.shape[-2:]))).detach()
