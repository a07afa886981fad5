"""Model registry: ``register_model`` / ``create_model`` / ``list_models``, timm style.

A registered factory only states architecture arguments; loading weights happens here, in
:func:`create_model`, so architecture files hold no loading code.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from densepac.errors import InputError, InputTypeError
from densepac.models.hub import resolve_weights
from densepac.models.weights import check_sha256, load_weights_into, shipped_card

#: ``encoder``: a feature pyramid backbone (smp encoder protocol, see :mod:`densepac.segmentation.models.encoders`).
TASKS = ("depth", "segmentation", "encoder")


@dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about one model name."""

    name: str
    factory: Callable[..., nn.Module]
    task: str
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)


_MODELS: dict[str, ModelEntry] = {}
#: Modules whose import registers the models; imported on the first lookup, so that the
#: registry can be imported by the model files themselves.
MODEL_MODULES = ("densepac.depth.models", "densepac.segmentation.models", "densepac.plugins.shape_adaptor")


def _import_models() -> None:
    for module in MODEL_MODULES:
        importlib.import_module(module)


def register_model(
    name: str | Callable[..., nn.Module] | None = None, *, task: str | None = None, **defaults: Any
) -> Callable:
    """Register a model factory (or class) under ``name``; used bare, as ``@register_model``, or called.

    Bare, the name is the factory's own (``def pac_learned_jbu_x8(...)`` registers
    ``pac_learned_jbu_x8``); called with a ``name``, a class may be registered under another
    name than its own. ``task`` defaults to the ``task`` attribute of the class (or of the
    factory's return annotation). Extra keyword arguments become defaults passed to the factory.
    """
    if callable(name):  # bare @register_model
        return register_model()(name)

    def decorator(obj: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or obj.__name__.lower()
        target = obj if inspect.isclass(obj) else inspect.signature(obj, eval_str=True).return_annotation
        model_task = task or getattr(target, "task", None)
        if model_task not in TASKS:
            raise ValueError(f"model {key!r}: task must be one of {TASKS}, got {model_task!r}")
        if key in _MODELS:
            raise ValueError(f"model name {key!r} is already registered")
        doc = inspect.getdoc(obj) or ""
        _MODELS[key] = ModelEntry(key, obj, model_task, doc.splitlines()[0] if doc else "", dict(defaults))
        return obj

    return decorator


def list_models(pattern: str | None = None, task: str | None = None) -> list[str]:
    """Sorted registered names, optionally filtered by a wildcard ``pattern`` and ``task``.

    A task name given alone, ``list_models("depth")``, filters by task (no model is named so).
    """
    if task is None and pattern in TASKS:
        pattern, task = None, pattern
    if task is not None and task not in TASKS:
        raise InputError(f"task must be one of {TASKS}, got {task!r}")
    _import_models()
    names = (n for n, e in _MODELS.items() if task is None or e.task == task)
    return sorted(n for n in names if pattern is None or fnmatch.fnmatch(n, pattern))


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; an unknown name lists the closest ones."""
    if not isinstance(name, str):
        raise InputTypeError(f"model name must be a str such as 'fcn8s_vgg16', got {type(name).__name__}")
    _import_models()
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_MODELS), n=5, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}?" if close else "see `densepac models` for the list"
        raise InputError(f"unknown model {name!r}: {hint}") from None


def create_model(name: str, pretrained: bool = False, weights: str | Path | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: registry name (see :func:`list_models`); a segmentation name with the suffix
            ``+crf`` (or ``crf=True``) is wrapped in a trainable PAC-CRF, built with
            ``crf_kwargs`` (a dict of :class:`~densepac.ops.PacCRF` arguments) when given.
        pretrained: load the shipped weights ``weights/<name>.safetensors`` (checked against
            the sha256 in its model card); the card's architecture arguments are used unless
            overridden in ``kwargs``.
        weights: a ``.safetensors`` file or a ``torch.save`` state dict (loaded with
            ``weights_only=True``) to load instead; with a CRF or STN it may hold the whole
            wrapped model or the base model alone (the wrappers then keep their initialisation).
        **kwargs: architecture arguments of the model's factory, plus for segmentation models:
            ``hot_swap`` (True: the model's :meth:`hot_swap_recipe`; or ``{"targets": [...],
            "guide": "..."}``: convolutions swapped for PAC layers, before any weights load);
            ``adl`` (True: ADL after the model's :meth:`adl_stages`; or a list of module
            names) with ``adl_kwargs`` (``drop_rate``, ``threshold``); ``stn`` ("affine",
            "attention" or "tps": a spatial transformer aligns the input and the logits are
            warped back) with ``stn_kwargs``. Order: model, ADL inside it, STN around it,
            CRF outermost (it refines the aligned logits with the original image).
    """
    crf = bool(kwargs.pop("crf", False))
    crf_kwargs = kwargs.pop("crf_kwargs", None) or {}
    adl = kwargs.pop("adl", False)
    adl_kwargs = kwargs.pop("adl_kwargs", None) or {}
    stn = kwargs.pop("stn", None)
    stn_kwargs = kwargs.pop("stn_kwargs", None) or {}
    swap = kwargs.pop("hot_swap", None)
    if not (swap is None or isinstance(swap, bool) or (isinstance(swap, dict) and set(swap) == {"targets", "guide"})):
        raise InputError(
            f'hot_swap={swap!r}: give true (the model\'s own recipe) or {{"targets": ["conv", ...], "guide": "layer"}}'
        )
    if isinstance(name, str) and name.endswith("+crf"):
        name, crf = name[: -len("+crf")], True
    entry = get_entry(name)  # a wrong type or an unknown name fails before anything else
    if weights is not None:
        weights = resolve_weights(weights)
    for given, wanted, flag in (
        (crf_kwargs, crf, "crf=True (or a +crf name)"),
        (adl_kwargs, adl, "adl=True"),
        (stn_kwargs, stn, "stn='affine'"),
    ):
        if given and not wanted:
            raise InputError(
                f"options {sorted(given)} given for {name!r} without the module they configure; add {flag}"
            )
    if (crf or adl or stn or swap) and entry.task != "segmentation":
        raise InputError(f"crf/adl/stn/hot_swap apply to segmentation models; {name!r} is a {entry.task} model")
    card = shipped_card(name) if pretrained else None
    if pretrained and card is None:
        raise InputError(f"model {name!r} has no shipped weights; train it with `densepac train` or pass weights=")
    args = {**entry.defaults, **(card.kwargs if card else {}), **kwargs}
    if card is not None:
        check_sha256(card.weights_path, card.sha256)
    weights = Path(weights) if weights is not None else None

    def compose(meta: bool) -> nn.Module:
        """The model, hot-swapped, with ADL, STN and CRF as asked, and its weights loaded.

        With ``meta``, the model inside the wrappers is built on the meta device and takes the
        file's tensors themselves; the wrappers, small, are built for real.
        """
        pending = weights
        with torch.device("meta") if meta else contextlib.nullcontext():
            model = _build(entry, name, args)
            model.task = entry.task
            model.model_name = name
            if swap:
                from densepac.models.hotswap import hot_swap

                targets, guide = model.hot_swap_recipe() if swap is True else (swap["targets"], swap["guide"])
                hot_swap(model, targets, guide)
        if card is not None:
            load_weights_into(model, card.weights_path)  # its sha256 was checked above
        if adl:
            from densepac.plugins.adl import insert_adl

            stages = model.adl_stages() if adl is True else list(adl)
            try:
                insert_adl(model, stages, **adl_kwargs)
            except TypeError as e:
                raise InputError(f"adl_kwargs {adl_kwargs!r}: {e}; use drop_rate and threshold") from None
        # Weights without the wrappers' keys belong to the model inside them: load them there.
        wrapped_keys = _wrapper_prefixes(pending) if pending is not None and (stn or crf) else set()
        if stn:
            from densepac.plugins.stn import wrap_stn

            if pending is not None and not wrapped_keys:
                _load_file(model, pending, entry.task)
                pending = None
            model = wrap_stn(model, stn, **stn_kwargs)
            model.task, model.model_name = "segmentation", f"{name}+stn_{stn}"
        if crf:
            from densepac.ops.crf import CRFWrapped, PacCRF

            if pending is not None and "crf" not in wrapped_keys:
                _load_file(model, pending, entry.task)
                pending = None
            model_name = model.model_name
            model = CRFWrapped(model, PacCRF(model.num_classes, **crf_kwargs))
            model.task, model.model_name = "segmentation", f"{model_name}+crf"
        if pending is not None:
            _load_file(model, pending, entry.task)
        return model

    model = _loaded_on_meta(compose) if card is not None or weights is not None else None
    return model if model is not None else compose(meta=False)


def _loaded_on_meta(compose: Callable[[bool], nn.Module]) -> nn.Module | None:
    """The model composed on the meta device and given its files' tensors, or None.

    The model is never initialised, so the weights are held once and nothing is spent on a
    random initialisation. This works whenever the files hold every parameter and buffer of
    the model inside the wrappers (its own state dict, a torchvision or smp checkpoint of it, a
    hot-swapped or CRF-wrapped model's whole export, base weights under a new CRF or STN).
    None otherwise (weights for part of the model, e.g. an ImageNet backbone; buffers a state
    dict does not hold; a composition that needs real tensors): the caller then builds the model
    for real and loads the same way (the file's tensors replace the initialisation as they
    load), which also gives the error if there is one.
    """
    try:
        model = compose(True)
    except (InputError, RuntimeError, NotImplementedError):
        return None
    return None if any(t.is_meta for t in (*model.parameters(), *model.buffers())) else model


def _build(entry: ModelEntry, name: str, args: dict[str, Any]) -> nn.Module:
    try:
        return entry.factory(**args)
    except TypeError as e:
        if "unexpected keyword argument" not in str(e):
            raise
        raise InputError(f"model {name!r}: {e}; see its docstring for the architecture arguments") from None


def _load_file(model: nn.Module, path: Path, task: str) -> None:
    """Load a weights file: strictly for depth models; for segmentation, any format its reader knows.

    Segmentation files may be torchvision checkpoints (FCN, DeepLabV3, LR-ASPP, with or
    without the auxiliary head, ImageNet VGG16/ResNet backbones) as well as densepac's own
    (:func:`densepac.segmentation.pretrained.load_pretrained`).
    """
    if task == "segmentation":
        from densepac.segmentation.pretrained import load_pretrained

        load_pretrained(model, path)
    else:
        load_weights_into(model, path)


def _wrapper_prefixes(path: Path) -> set[str]:
    """Which wrappers (``crf``, ``stn``) the segmentation weights (a file or a run folder) hold parameters of."""
    from densepac.engine.checkpoint import read_pretrained

    keys = list(read_pretrained(path)[0])
    return {w for w in ("crf", "stn") if any(k.startswith(f"{w}.") or f".{w}." in k for k in keys)}


def require_task(name: str | None, task: str) -> None:
    """Refuse a registry model of another ``task`` before anything is built or loaded (None passes)."""
    if name is None:
        return
    found = get_entry(name.removesuffix("+crf")).task
    if found != task:
        raise InputError(
            f"model {name!r} is a {found} model, not a {task} model; pick one from `densepac models --task {task}`"
        )
