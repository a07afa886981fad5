"""Pretrained segmentation weights, recognised by their keys and loaded into registry models.

:func:`load_pretrained` takes a torchvision ``vgg16`` state dict (ImageNet backbone of
FCN-8s), a torchvision ``fcn_resnet50/101`` or ImageNet ``resnet50/101`` state dict (for the
``fcn_resnet*`` models), or anything densepac wrote: a run folder, a checkpoint root or
folder, a ``.safetensors`` / ``.pt`` weights file, of a plain, hot-swapped or CRF-wrapped
model. Nothing is unpickled: safetensors, or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from densepac.engine.checkpoint import read_pretrained
from densepac.errors import InputError, WeightsError
from densepac.models.hub import resolve_weights
from densepac.models.weights import load_state_into, state_dict_mismatch
from densepac.ops.crf import CRFWrapped
from densepac.segmentation.models.fcn import FCN8s, load_vgg16_backbone
from densepac.segmentation.models.smp import SmpSegmentation
from densepac.segmentation.models.torchvision_seg import TorchvisionSegmentation

#: torchvision ``vgg16().features`` indices of the 13 convolutions.
_VGG16_CONV_INDICES = frozenset((0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28))


#: Bottleneck blocks in ``layer3`` of torchvision's ResNet-50 / ResNet-101.
_RESNET_LAYER3_BLOCKS = {6: 50, 23: 101}
_log = logging.getLogger(__name__)


def detect_weights_format(state: Mapping[str, torch.Tensor]) -> str:
    """Which kind of state dict ``state`` is, from its keys.

    Returns:
        ``"vgg16"`` (torchvision VGG: ``features.<i>.*``), ``"torchvision_seg"`` (a torchvision
        segmentation network: ``backbone.*`` + ``classifier.*``), ``"resnet"`` (torchvision
        ImageNet ResNet: ``conv1``, ``layer4``, ``fc``), ``"smp"`` (a segmentation_models_pytorch
        model: ``encoder.*`` + ``segmentation_head.*``) or ``"densepac"`` (anything else).
    """
    keys = [k[len("module.") :] if k.startswith("module.") else k for k in state]
    if any(re.fullmatch(r"features\.\d+\.weight", k) for k in keys):
        return "vgg16"
    if any(k.startswith("backbone.") for k in keys) and any(k.startswith("classifier.") for k in keys):
        return "torchvision_seg"
    if "conv1.weight" in keys and "fc.weight" in keys and any(k.startswith("layer4.") for k in keys):
        return "resnet"
    if any(k.startswith("encoder.") for k in keys) and any(k.startswith("segmentation_head.") for k in keys):
        return "smp"
    return "densepac"


def torchvision_arch(state: Mapping[str, torch.Tensor]) -> str | None:
    """The registry name of the torchvision segmentation network a state dict comes from, or None."""
    keys = {k[len("module.") :] if k.startswith("module.") else k for k in state}
    if not any(k.startswith("classifier.") for k in keys):
        return None
    if any(k.startswith("classifier.cbr.") for k in keys):
        head = "lraspp"
    elif any(k.startswith("classifier.0.convs.") for k in keys):
        head = "deeplabv3"
    else:
        head = "fcn"
    if "backbone.conv1.weight" in keys:
        depth = _resnet_depth(state, "backbone.")
        return f"{head}_resnet{depth}" if depth else None
    return f"{head}_mobilenet_v3_large" if "backbone.0.0.weight" in keys and head != "fcn" else None


def _base(model: nn.Module) -> nn.Module:
    return model.model if isinstance(model, CRFWrapped) else model


def _name(model: nn.Module) -> str:
    return str(getattr(model, "model_name", type(model).__name__))


def _class_mismatch(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], k: int) -> int | None:
    """The class count of ``state`` when every shape mismatch is a class axis (``k`` in the model), else None."""
    found: set[int] = set()
    for key, target in own.items():
        source = state.get(key)
        if source is None or source.shape == target.shape:
            continue
        if source.dim() != target.dim():
            return None
        axes = [i for i in range(target.dim()) if source.shape[i] != target.shape[i]]
        if any(target.shape[i] != k for i in axes):
            return None
        found.update(int(source.shape[i]) for i in axes)
    return found.pop() if len(found) == 1 else None


def _check_classes(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    own: Mapping[str, torch.Tensor] | None = None,
    new_classes: bool = False,
) -> Mapping[str, torch.Tensor]:
    """``state``, checked for another class count than the model's.

    Refused (naming both counts), or with ``new_classes`` the class layers are taken from the
    model as it was built (freshly initialised) and a note says so: the rest still loads.
    """
    k = getattr(model, "num_classes", None)
    if not isinstance(k, int):
        return state
    own = own if own is not None else model.state_dict()
    n = _class_mismatch(own, state, k)
    if n is None:
        return state
    if not new_classes:
        raise InputError(
            f"{source} predicts {n} classes but the model has {k}; "
            f"set num_classes={n} or start from weights without the class layers"
        )
    fresh = [key for key, v in own.items() if key in state and state[key].shape != v.shape]
    _log.warning(
        "%s predicts %d classes, the model %d: its class layers (%s) start fresh, the rest is loaded",
        source,
        n,
        k,
        ", ".join(fresh),
    )
    return {**state, **{key: own[key] for key in fresh}}


def load_exact(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str, kind: str, new_classes: bool = False
) -> None:
    """Strict ``load_state_dict`` whose failure names the class counts, or the keys and shapes at fault.

    ``new_classes``: weights of another class count load all but their class layers.
    """
    own = model.state_dict()
    state = _check_classes(model, state, source, own, new_classes)
    problem = state_dict_mismatch(own, state)
    if problem:
        raise WeightsError(
            f"{kind} weights {source} do not fit model {_name(model)!r}: {problem}; "
            "pick the model these weights were trained for"
        )
    load_state_into(model, own, state)


def _load_vgg16(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    base = _base(model)
    if not isinstance(base, FCN8s):
        raise WeightsError(
            f"{source} holds torchvision VGG16 weights, which fit fcn8s_vgg16 / pac_fcn8s_vgg16, "
            f"not {_name(base)!r}; pick an FCN-8s model or other weights"
        )
    keys = {k[len("module.") :] if k.startswith("module.") else k for k in state}
    if any(k.startswith("features.") and k.endswith(("running_mean", "running_var")) for k in keys):
        raise WeightsError(f"{source} holds a batch-norm VGG (vgg16_bn); give plain torchvision vgg16 weights")
    convs = {int(m.group(1)) for k in keys if (m := re.fullmatch(r"features\.(\d+)\.weight", k))}
    if convs != _VGG16_CONV_INDICES:
        raise WeightsError(
            f"{source} holds a VGG with {len(convs)} convolutions, not VGG16's 13; give torchvision vgg16 weights"
        )
    load_vgg16_backbone(base, state, load_fc="classifier.0.weight" in keys)
    _log.warning("%s: ImageNet VGG16 backbone loaded; the class layers start untrained (fine-tune them)", source)


def _resnet_depth(state: Mapping[str, torch.Tensor], prefix: str) -> int | None:
    blocks = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"layer3\.(\d+)\.", k))}
    return _RESNET_LAYER3_BLOCKS.get(max(blocks) + 1) if blocks else None


def model_for_weights(path: str | Path) -> tuple[str, dict[str, Any]] | None:
    """(registry name, architecture arguments) of a torchvision segmentation checkpoint or a
    ``densepac finetune`` run (:func:`~densepac.segmentation.recipe.model_of_run`), or None.

    Lets ``densepac segment --weights fcn_resnet50_coco-1167a1af.pth`` (or ``--weights
    runs/NAME``) run without ``--model``: a torchvision file's architecture and class count are
    read off the keys and the last layer's shape, a run's from its configuration.
    """
    from densepac.segmentation.recipe import model_of_run

    found = model_of_run(resolve_weights(path))
    if found is not None:
        return found
    state, _ = read_pretrained(path)
    fmt = detect_weights_format(state)
    if fmt in ("vgg16", "resnet"):
        model = "fcn8s_vgg16" if fmt == "vgg16" else f"fcn_resnet{_resnet_depth(state, '') or 50}"
        raise InputError(
            f"{path} holds ImageNet {'VGG16' if fmt == 'vgg16' else 'ResNet'} weights, a backbone without "
            f"segmentation layers: fine-tune it first (`densepac finetune --model {model} --weights {path}`), "
            f"or pass --model {model} to run it with untrained class layers"
        )
    if fmt != "torchvision_seg" or (arch := torchvision_arch(state)) is None:
        return None
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
    last = state.get("classifier.high_classifier.weight", state.get("classifier.4.weight"))
    return arch, ({} if last is None else {"num_classes": int(last.shape[0])})


def _load_torchvision(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str, fmt: str, new_classes: bool = False
) -> None:
    base = _base(model)
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
    if fmt == "resnet":
        arch, title = None, "torchvision ImageNet ResNet"
    else:
        arch = torchvision_arch(state)
        title = f"torchvision {arch or 'segmentation'}"
    if not isinstance(base, TorchvisionSegmentation):
        fits = arch or "fcn_resnet50 / fcn_resnet101 / deeplabv3_resnet50 / deeplabv3_resnet101"
        raise WeightsError(
            f"{source} holds {title} weights, which fit {fits}, not {_name(base)!r}; pick that model or other weights"
        )
    if fmt == "resnet":  # ImageNet classifier: backbone only, the heads keep their initialisation
        depth = _resnet_depth(state, "")
        if base.depth is None or depth != base.depth:
            raise WeightsError(
                f"{source} holds ImageNet ResNet-{depth} weights, which fit a ResNet-{depth} backbone, not "
                f"{base.arch}; use fcn_resnet{depth} or deeplabv3_resnet{depth}"
            )
        backbone = {k: v for k, v in state.items() if not k.startswith("fc.")}
        load_exact(base.net.backbone, backbone, source, title)
        _log.warning(
            "%s: ImageNet ResNet backbone loaded; the segmentation head starts untrained (fine-tune it)", source
        )
        return
    if arch is not None and arch != base.arch:
        raise WeightsError(f"{source} holds torchvision {arch} weights, not {base.arch}; use --model {arch}")
    has_aux = any(k.startswith("aux_classifier.") for k in state)
    if base.aux_loss and not has_aux:
        raise WeightsError(
            f"{source} has no auxiliary head but the model was built with aux_loss=True; build it with aux_loss=False"
        )
    # COCO/VOC checkpoints carry the auxiliary head; a model without one ignores it.
    kept = {k: v for k, v in state.items() if base.aux_loss or not k.startswith("aux_classifier.")}
    own = base.net.state_dict()
    kept = _check_classes(base, _align_pac_keys(kept, own, source), source, own, new_classes)  # names both counts
    load_exact(base.net, kept, source, title)


def _load_smp(model: nn.Module, state: Mapping[str, torch.Tensor], source: str, new_classes: bool = False) -> None:
    """A segmentation_models_pytorch state dict (``torch.save(net.state_dict())`` or ``save_pretrained``)."""
    base = _base(model)
    if not isinstance(base, SmpSegmentation):
        raise WeightsError(
            f"{source} holds segmentation_models_pytorch weights, which fit smp_unet / smp_fpn / "
            f"smp_deeplabv3plus / smp, not {_name(base)!r}; pick that model with its encoder_name"
        )
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
    own = base.net.state_dict()
    state = _check_classes(base, _align_pac_keys(state, own, source), source, own, new_classes)
    load_exact(base.net, state, source, f"smp {base.arch} ({base.encoder_name})")


def _align_pac_keys(
    state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor]:
    """Rename plain-conv keys to the ``.pac.`` keys of a hot-swapped model; refuse the reverse."""
    out = dict(state)
    for key in own:
        if ".pac." in key and key not in out:
            plain = key.replace(".pac.", ".")
            if plain in out:
                out[key] = out.pop(plain)
    stray = [k for k in out if ".pac." in k and k not in own and k.replace(".pac.", ".") in own]
    if stray:
        raise WeightsError(
            f"{source} comes from a hot-swapped PAC model (e.g. {stray[0]}); build the model hot-swapped: "
            "hot_swap=True (`finetune --hot-swap`, `segment --arg hot_swap=true`), or pac_fcn8s_vgg16 for FCN-8s; "
            "a run folder or an exported file with its model card rebuilds it by itself"
        )
    return out


def _load_densepac(model: nn.Module, state: Mapping[str, torch.Tensor], source: str, new_classes: bool = False) -> None:
    has_crf = any(k.startswith("crf.") for k in state)
    if isinstance(model, CRFWrapped) and not has_crf:
        _load_densepac(model.model, state, source, new_classes)  # weights of the base model; the CRF keeps its init
        return
    if has_crf and not isinstance(model, CRFWrapped):
        raise WeightsError(f"{source} holds a model with a PAC-CRF (crf.* keys); set crf=True (--crf)")
    load_exact(model, _align_pac_keys(state, model.state_dict(), source), source, "densepac", new_classes)


def load_pretrained(model: nn.Module, path: str | Path, new_classes: bool = False) -> str:
    """Load pretrained weights into ``model`` (in place), recognising their format by the keys.

    - torchvision ``vgg16`` state dict -> the FCN-8s backbone and fc6/fc7
      (:func:`~densepac.segmentation.models.fcn.load_vgg16_backbone`); the score layers keep their init.
    - torchvision FCN / DeepLabV3 / LR-ASPP state dict (``torchvision:ENUM`` names resolve
      through the hub cache, :func:`~densepac.models.hub.resolve_weights`) -> the registry
      model of the same architecture (its auxiliary head is dropped when the model has
      none); ImageNet ``resnet50/101`` -> a ResNet model's backbone.
    - densepac weights (file, run, checkpoint root or folder) of the same architecture;
      plain-FCN weights also load into a hot-swapped model (the PAC layers take the conv
      weights), base-model weights into a CRF-wrapped one (the CRF keeps its init).

    ``model`` may be wrapped in :class:`CRFWrapped`. ``new_classes``: weights of another class
    count than the model's load all but their class layers, which start fresh (a note says
    so); otherwise they are refused. Returns the detected format.

    Raises:
        InputError: the path does not exist, or the weights predict another number of classes.
        WeightsError: the weights belong to another architecture (the message names it).
    """
    state, source = read_pretrained(path)
    fmt = detect_weights_format(state)
    if fmt == "vgg16":
        _load_vgg16(model, state, source)
    elif fmt in ("torchvision_seg", "resnet"):
        _load_torchvision(model, state, source, fmt, new_classes)
    elif fmt == "smp":
        _load_smp(model, state, source, new_classes)
    else:
        _load_densepac(model, state, source, new_classes)
    return fmt
