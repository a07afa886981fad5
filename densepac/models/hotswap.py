"""Hot-swapping: turn named ``nn.Conv2d`` layers of any model into PAC layers fed by a guide layer.

``hot_swap(model, ["features.10", "features.12"], guide="features.3")`` replaces each target
convolution, in place, by a :class:`GuidedConv2d`. The wrapper keeps the convolution's
``forward(x)`` signature, so the parent's forward code is untouched; inside, it runs
``PacConv2d.from_conv(conv)`` (bit-for-bit the pretrained weights) with the guide features
that a forward hook captured from the ``guide`` module earlier in the same forward pass,
resized to ``x``'s size and multiplied by ``guide_scale``. A small ``guide_scale`` makes every
kernel value close to 1, so the swapped model starts out computing what the pretrained one
did (the paper's initialisation for fine-tuning).

Where the captured features live: in a :class:`GuideStore`, a plain object referenced by the
capture hook on the guide module, by every wrapper of the same :func:`hot_swap` call, and by
two hooks on ``model`` itself that empty it when a forward starts and when it ends (even on
an exception). Nothing is global; the store is not a submodule (an ``nn.Sequential`` would
try to run it) and holds no state-dict entries. ``copy.deepcopy`` copies the hooks and the
wrappers together, so a copy gets its own store.

State-dict keys: a swapped ``<name>.weight`` / ``<name>.bias`` becomes ``<name>.pac.weight`` /
``<name>.pac.bias``; every other key is unchanged. Load such a state dict into a model that was
swapped the same way. ``nn.DataParallel`` replicas would share a store (use DDP).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from densepac.errors import InputError, InputTypeError
from densepac.ops.kernels import get_kernel
from densepac.ops.layers import PacConv2d

RESIZE_MODES = ("bilinear", "bicubic", "nearest", "area", "none")


class GuideStore:
    """Guide features of one forward pass, shared by a guide hook and its swapped layers."""

    def __init__(self, guide_name: str) -> None:
        self.guide_name = guide_name
        self.features: torch.Tensor | None = None

    def clear(self) -> None:
        self.features = None

    # A copy never inherits features of a forward in flight (non-leaf tensors cannot be
    # deep-copied, and they belong to the original's graph anyway).
    def __deepcopy__(self, memo: dict) -> GuideStore:
        new = GuideStore(self.guide_name)
        memo[id(self)] = new
        return new

    def __getstate__(self) -> dict:
        return {"guide_name": self.guide_name, "features": None}

    def __repr__(self) -> str:
        held = "empty" if self.features is None else f"holding {tuple(self.features.shape)}"
        return f"GuideStore(guide={self.guide_name!r}, {held})"


class _CaptureGuide:
    """Forward hook on the guide module: stores its output (a callable object so deepcopy follows it)."""

    def __init__(self, store: GuideStore) -> None:
        self.store = store

    def __call__(self, module: nn.Module, args: tuple, output: object) -> None:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise InputTypeError(
                f"guide layer {self.store.guide_name!r} must output an (N, C, H, W) tensor, got "
                f"{tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__}"
            )
        self.store.features = output


class _ClearGuide:
    """Hook on the root model: empties the store before and after each forward."""

    def __init__(self, store: GuideStore) -> None:
        self.store = store

    def __call__(self, module: nn.Module, *args: object) -> None:
        self.store.clear()


class GuidedConv2d(nn.Module):
    """Drop-in for an ``nn.Conv2d``: ``forward(x (N,Cin,H,W)) -> (N,Cout,Ho,Wo)`` through ``self.pac``.

    The adapting features are the guide layer's output (N, Cg, h, w) of the current forward,
    resized to (H, W) with ``resize`` and multiplied by ``guide_scale``.
    """

    def __init__(self, pac: PacConv2d, store: GuideStore, guide_scale: float = 1e-4, resize: str = "bilinear") -> None:
        super().__init__()
        if resize not in RESIZE_MODES:
            raise InputError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        self.pac = pac
        self.store = store
        self.guide_scale = float(guide_scale)
        self.resize = resize

    def guide_for(self, x: torch.Tensor) -> torch.Tensor:
        """The scaled guide features at ``x``'s spatial size."""
        feats = self.store.features
        if feats is None:
            raise RuntimeError(
                f"guide layer {self.store.guide_name!r} has produced no features in this forward pass before "
                "a swapped layer ran; pick a guide layer that runs before every target layer"
            )
        if feats.shape[0] != x.shape[0]:
            raise InputError(f"guide features batch {feats.shape[0]} != input batch {x.shape[0]}")
        size = tuple(x.shape[-2:])
        if tuple(feats.shape[-2:]) != size:
            if self.resize == "none":
                raise InputError(
                    f"guide features {tuple(feats.shape[-2:])} differ from the input size {size}; "
                    "pass resize='bilinear' (or another mode) to hot_swap"
                )
            if self.resize in ("bilinear", "bicubic"):
                shrink = feats.shape[-2] > size[0] or feats.shape[-1] > size[1]
                feats = F.interpolate(feats, size=size, mode=self.resize, align_corners=False, antialias=shrink)
            else:
                feats = F.interpolate(feats, size=size, mode=self.resize)
        return feats * self.guide_scale

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.pac(input, self.guide_for(input))

    def extra_repr(self) -> str:
        return f"guide={self.store.guide_name!r}, guide_scale={self.guide_scale:g}, resize={self.resize!r}"


def swapped_layers(model: nn.Module) -> list[str]:
    """Dotted names of the :class:`GuidedConv2d` layers in ``model``."""
    return [name for name, m in model.named_modules() if isinstance(m, GuidedConv2d)]


def _close(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    if close:
        return "did you mean " + ", ".join(repr(c) for c in close) + "?"
    shown = ", ".join(repr(c) for c in candidates[:8])
    return f"available: {shown}{', ...' if len(candidates) > 8 else ''}" if candidates else "none available"


def hot_swap(
    model: nn.Module,
    targets: Sequence[str] | str,
    guide: str,
    *,
    guide_scale: float = 1e-4,
    kernel_type: str = "gaussian",
    normalize: bool = False,
    resize: str = "bilinear",
) -> list[str]:
    """Replace the named ``nn.Conv2d`` layers of ``model`` by PAC layers guided by layer ``guide``.

    Args:
        model: any module; changed in place.
        targets: dotted names as in ``model.named_modules()`` (a single name is accepted).
        guide: dotted name of the module whose (N, C, h, w) output guides every target; it must
            run before them in ``model``'s forward and must not be a target.
        guide_scale: multiplies the guide features. With the default 1e-4 every kernel value is
            close to 1 and the swapped model reproduces the original until fine-tuned.
        kernel_type, normalize: as :class:`~densepac.ops.PacConv2d`. ``normalize=True`` divides
            by the kernel sum and therefore no longer reproduces the original at first.
        resize: how guide features reach each target's input size: ``"bilinear"``
            (antialiased when shrinking), ``"bicubic"``, ``"nearest"``, ``"area"`` or ``"none"``.

    Returns:
        The replaced names, in the given order.

    Raises:
        ValueError: unknown names, a target that is not an ``nn.Conv2d`` (or was swapped
            already), a duplicate target, a guide that is a target or the model itself.
        TypeError: ``targets`` is not a sequence of strings.
    """
    if isinstance(targets, str):
        targets = [targets]
    targets = list(targets)
    if not targets or not all(isinstance(t, str) for t in targets):
        raise InputTypeError(f"targets must be a non-empty sequence of module names, got {targets!r}")
    if not isinstance(guide, str):
        raise InputTypeError(f"guide must be a module name, got {type(guide).__name__}")
    if resize not in RESIZE_MODES:
        raise InputError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    get_kernel(kernel_type)
    if not guide_scale > 0:
        raise InputError(f"guide_scale must be > 0, got {guide_scale}")

    # remove_duplicate=False: a layer registered under two names is reachable by either.
    modules = dict(model.named_modules(remove_duplicate=False))
    convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
    dupes = sorted({t for t in targets if targets.count(t) > 1})
    if dupes:
        raise InputError(f"targets name {dupes} more than once")
    for t in targets:
        if t == "":
            raise InputError("targets must name layers inside the model; the model itself cannot be swapped in place")
        m = modules.get(t)
        if m is None:
            raise InputError(f"no module named {t!r} in {type(model).__name__}; {_close(t, convs)}")
        if isinstance(m, GuidedConv2d):
            raise InputError(f"{t!r} is already swapped for a PAC layer; swap each layer once")
        if not isinstance(m, nn.Conv2d):
            raise InputError(f"{t!r} is a {type(m).__name__}, not an nn.Conv2d; {_close(t, convs)}")
        if m.padding_mode != "zeros":
            raise InputError(f"{t!r} uses padding_mode={m.padding_mode!r}; PAC layers support 'zeros' only")
    if guide == "":
        raise InputError("guide must name a layer inside the model, not the model itself (its output comes last)")
    if guide not in modules:
        raise InputError(
            f"no guide module named {guide!r} in {type(model).__name__}; {_close(guide, [n for n in modules if n])}"
        )
    if any(modules[guide] is modules[t] for t in targets):
        raise InputError(f"guide {guide!r} is also a target; guide the swap with a different layer")
    inside = [t for t in targets if t.startswith(guide + ".")]
    if inside:
        raise InputError(f"guide {guide!r} contains targets {inside}; its output is only ready after they ran")

    # Validated; from here on nothing fails half-way.
    store = GuideStore(guide)
    modules[guide].register_forward_hook(_CaptureGuide(store))
    clear = _ClearGuide(store)
    model.register_forward_pre_hook(clear)
    model.register_forward_hook(clear, always_call=True)

    wrappers = {
        id(modules[t]): GuidedConv2d(
            PacConv2d.from_conv(modules[t], kernel_type, normalize), store, guide_scale, resize
        )
        for t in targets
    }
    # Replace every path to a target (a conv registered twice keeps sharing one wrapper).
    paths = [n for n, m in model.named_modules(remove_duplicate=False) if id(m) in wrappers]
    for path in paths:
        parent, _, leaf = path.rpartition(".")
        setattr(model.get_submodule(parent), leaf, wrappers[id(modules[path])])
    return targets
