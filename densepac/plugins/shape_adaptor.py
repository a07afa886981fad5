"""Shape Adaptor: a learnable resizing module, and ResNet encoders built from it.

Liu, Davison & Johns, "Shape Adaptor: A Learnable Resizing Module", ECCV 2020.

A shape adaptor mixes two resizing branches of the same input, a small one at scale ``r1``
and a large one at scale ``r2`` (``0 < r1 < r2 <= 1``), with a learnable
``alpha = sigmoid(logit)``::

    s(alpha) = (r2 - r1) * alpha + r1
    out      = (1 - alpha) * resize(x_r1, size) + alpha * resize(x_r2, size)

``alpha`` weights the ``r2`` branch, as in the paper, so ``s`` and the mix move together:
``alpha -> 1`` gives scale ``r2`` and the large branch, ``alpha -> 0`` scale ``r1`` and the
small one. ``size`` is the output size for scale ``s`` (below); both branches are resized to
it bilinearly (``align_corners=False``, which keeps the pixel-area alignment of strided
branches). Sizes are Python ints, read from ``alpha`` without gradient; ``alpha`` learns
through the mixing weights, as in the paper.

Size rules, for a chain of adaptors with scales ``s_1 .. s_n`` on an input of side ``H``
(each side separately, at least 1):

- ``local``: each adaptor floors its own input side times its scale,
  ``h_k = floor(h_{k-1} * s_k)``, so every adaptor drops at least one pixel.
- ``global``: ``h_k = round(H * s_1 * ... * s_k)`` (half up), so the shape follows the
  network-level product and a scale near 1 can keep the size.

ResNet-style adaptor (the paper's residual shape adaptor): inside a residual block the ``r1``
branch is a ResNet projection shortcut (1x1 convolution, stride 2, + BN, learnable) of the
block input and the ``r2`` branch is the block's residual path ``F(x)`` at full resolution
(without the identity); the two are mixed with weights ``2 (1 - alpha)`` and ``2 alpha``, so
at ``alpha = 0.5`` the block is exactly ``proj(x) + F(x)`` followed by the block's ReLU.

Converting a ResNet (:func:`convert_resnet`, :class:`ShapeAdaptorResNet`): all five fixed
downsamplings are removed -- ``conv1``'s stride 2, the max-pool in the main path and the
stride-2 convolution of the first block of ``layer2``, ``layer3`` and ``layer4`` (their 1x1
projection shortcuts become stride 1; they only project channels) -- and ``n`` shape
adaptors take over all resizing:

- ``n = round(log(input_size / min_output_size) / log(1 / r1))`` (or ``num_adaptors``), so
  with every ``alpha`` at 0 the output side reaches about ``min_output_size``.
- Candidate positions, in order: the stem (after ``conv1/bn1/relu``; its ``r1`` branch is the
  ResNet's own 3x3/2 max-pool, its ``r2`` branch the identity) and every residual block
  except the network's last (ResNet-style adaptor). ``n`` positions are spread uniformly:
  candidate ``floor(i * C / n)`` for ``i = 0 .. n - 1`` among ``C`` candidates, so the stem
  is always one when ``n >= 1``.
- A block that already has a projection shortcut (first block of a layer) reuses it as the
  ``r1`` branch with stride 2 (pretrained weights kept); a block with an identity shortcut
  gets a new 1x1 stride-2 projection initialised to the identity (Dirac) + BN, so a
  pretrained network starts close to its original function.
- Every ``alpha`` starts so the output side is ``init_output_size`` (default
  ``input_size / 32``, the plain ResNet's shape): ``s_0 = (init_output_size / input_size) **
  (1 / n)``, clamped to ``alpha`` in ``[0.05, 0.95]`` so the sigmoid keeps a usable gradient.

The converted encoder follows smp's encoder protocol: ``forward(x) -> [x, stem, layer1,
layer2, layer3, layer4][: depth + 1]`` and ``out_channels``; feature sides follow the learned
scales instead of halving. Train ``alpha`` with its own learning rate
(:func:`shape_adaptor_param_groups`, the paper uses a larger one than for the weights),
optionally bound memory with :func:`shape_penalty`, read the learned shapes with
:meth:`ShapeAdaptorResNet.learned_shapes` and export a fixed-shape encoder with
:meth:`ShapeAdaptorResNet.export_fixed`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from densepac.check import check_int
from densepac.errors import InputError
from densepac.models.blocks import resize
from densepac.models.registry import register_model

SIZE_RULES = ("local", "global")
#: Initial alpha is kept in [ALPHA_INIT_MIN, 1 - ALPHA_INIT_MIN]: at a saturated sigmoid alpha would barely learn.
ALPHA_INIT_MIN = 0.05

Size = tuple[int, int]


def check_ratios(r1: float, r2: float) -> tuple[float, float]:
    """``(r1, r2)`` as floats after checking ``0 < r1 < r2 <= 1``."""
    try:
        r1, r2 = float(r1), float(r2)
    except (TypeError, ValueError):
        raise InputError(f"shape adaptor: r1={r1!r}, r2={r2!r} must be numbers with 0 < r1 < r2 <= 1") from None
    if not (0.0 < r1 <= 1.0 and 0.0 < r2 <= 1.0):
        raise InputError(f"shape adaptor: r1={r1}, r2={r2} must lie in (0, 1]; e.g. r1=0.5, r2=1.0")
    if r1 >= r2:
        raise InputError(f"shape adaptor: r1={r1} must be smaller than r2={r2}; e.g. r1=0.5, r2=1.0")
    return r1, r2


def check_size_rule(size_rule: str) -> str:
    if size_rule not in SIZE_RULES:
        raise InputError(f"shape adaptor: unknown size_rule {size_rule!r}; use 'local' or 'global'")
    return size_rule


def _pair(size: int | Sequence[int], name: str = "input size") -> Size:
    values = (size, size) if isinstance(size, int) else tuple(size)
    if len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise InputError(f"shape adaptor: {name} {size!r} must be a positive int or (H, W) of positive ints")
    return values[0], values[1]


def adaptor_output_sizes(
    input_size: int | Sequence[int], scales: Sequence[float], size_rule: str = "local"
) -> list[Size]:
    """Output (H, W) of each adaptor of a chain with ``scales`` on an input of ``input_size``.

    Layers between adaptors keep the size. ``local``: ``floor(previous side * s_k)``;
    ``global``: ``round(input side * s_1 * ... * s_k)`` (half up). Every side is at least 1.
    """
    check_size_rule(size_rule)
    h, w = _pair(input_size)
    sizes: list[Size] = []
    if size_rule == "local":
        for s in scales:
            h, w = max(1, math.floor(h * s)), max(1, math.floor(w * s))
            sizes.append((h, w))
    else:
        product = 1.0
        for s in scales:
            product *= s
            sizes.append((max(1, math.floor(h * product + 0.5)), max(1, math.floor(w * product + 0.5))))
    return sizes


def number_of_adaptors(input_size: int, min_output_size: float, r1: float = 0.5) -> int:
    """``round(log(input_size / min_output_size) / log(1 / r1))``: adaptors needed to reach ``min_output_size``."""
    if min_output_size <= 0 or input_size < min_output_size:
        raise InputError(
            f"shape adaptor: input_size={input_size} is smaller than min_output_size={min_output_size}; "
            "give an input_size at least min_output_size"
        )
    return round(math.log(input_size / min_output_size) / math.log(1.0 / r1))


def initial_alpha(input_size: int, output_size: float, n: int, r1: float = 0.5, r2: float = 1.0) -> float:
    """The alpha (shared by ``n`` adaptors) whose scale takes ``input_size`` to ``output_size``.

    ``s_0 = (output_size / input_size) ** (1 / n)``, ``alpha = (s_0 - r1) / (r2 - r1)``,
    clamped to ``[ALPHA_INIT_MIN, 1 - ALPHA_INIT_MIN]``.
    """
    if n < 1:
        return 0.5
    s0 = (output_size / input_size) ** (1.0 / n)
    alpha = (s0 - r1) / (r2 - r1)
    return min(max(alpha, ALPHA_INIT_MIN), 1.0 - ALPHA_INIT_MIN)


def _mix(low: torch.Tensor, high: torch.Tensor, alpha: torch.Tensor, size: Size, residual: bool) -> torch.Tensor:
    """``(1 - alpha) * low + alpha * high`` at ``size`` (times 2 for residual adaptors)."""
    alpha = alpha.to(high.dtype)
    out = (1 - alpha) * resize(low, size) + alpha * resize(high, size)
    # Residual adaptors: 2x keeps the magnitude of a plain residual sum proj(x) + F(x) at alpha = 0.5.
    return 2 * out if residual else out


class ShapeAdaptor(nn.Module):
    """A learnable resizing module: ``forward(low (N,C,h1,w1), high (N,C,h2,w2), size) -> (N,C,*size)``.

    ``low`` is the ``r1`` branch, ``high`` the ``r2`` branch (weighted by ``alpha``). The
    caller gives the output ``size``: :meth:`output_size` (local rule) or
    :func:`adaptor_output_sizes` for a whole chain.

    Args:
        r1, r2: scales of the two branches, ``0 < r1 < r2 <= 1``.
        init_alpha: initial ``alpha`` in (0, 1) (0.5: the middle scale).
        residual: mix with ``2 (1 - alpha)`` and ``2 alpha`` (ResNet-style adaptor).
    """

    def __init__(self, r1: float = 0.5, r2: float = 1.0, init_alpha: float = 0.5, residual: bool = False) -> None:
        super().__init__()
        self.r1, self.r2 = check_ratios(r1, r2)
        if not 0.0 < float(init_alpha) < 1.0:
            raise InputError(f"ShapeAdaptor: init_alpha={init_alpha!r} must lie in (0, 1), e.g. 0.5")
        self.residual = bool(residual)
        self.logit = nn.Parameter(torch.logit(torch.tensor(float(init_alpha), dtype=torch.float64)).float())

    @property
    def alpha(self) -> torch.Tensor:
        """``sigmoid(logit)``, a 0-dim tensor with gradient."""
        return torch.sigmoid(self.logit)

    def scale(self) -> torch.Tensor:
        """``s(alpha) = (r2 - r1) * alpha + r1``, a 0-dim tensor with gradient."""
        return (self.r2 - self.r1) * self.alpha + self.r1

    def scale_value(self) -> float:
        """``s(alpha)`` as a Python float (no gradient; for sizes and reports)."""
        return float(self.scale().detach().cpu())

    def output_size(self, input_size: int | Sequence[int]) -> Size:
        """Local rule: ``floor(side * s)`` per side, at least 1."""
        return adaptor_output_sizes(input_size, [self.scale_value()], "local")[0]

    def forward(self, low: torch.Tensor, high: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return _mix(low, high, self.alpha, _pair(size, "size"), self.residual)

    def freeze(self) -> FixedShapeAdaptor:
        """A :class:`FixedShapeAdaptor` with this adaptor's current scale and mixing weight."""
        with torch.no_grad():
            alpha = self.alpha.detach().clone()
        return FixedShapeAdaptor(self.scale_value(), alpha, self.residual, (self.r1, self.r2))

    def extra_repr(self) -> str:
        return f"r1={self.r1}, r2={self.r2}, residual={self.residual}"


class FixedShapeAdaptor(nn.Module):
    """A shape adaptor frozen at a learned shape: fixed scale, fixed mixing weight, no parameter.

    Same ``forward(low, high, size)`` as :class:`ShapeAdaptor`, so an exported network
    computes exactly what the adaptive one computed at that shape. The weight is a buffer
    (it follows ``.to()`` / ``.double()``); the scale is a Python float.
    """

    def __init__(
        self,
        scale: float,
        alpha: float | torch.Tensor,
        residual: bool = False,
        ratios: tuple[float, float] = (0.5, 1.0),
    ) -> None:
        super().__init__()
        self.fixed_scale, self.residual, (self.r1, self.r2) = float(scale), bool(residual), ratios
        alpha = alpha.detach().clone() if isinstance(alpha, torch.Tensor) else torch.tensor(float(alpha))
        self.register_buffer("alpha", alpha.reshape(()))

    def scale(self) -> torch.Tensor:
        return self.alpha.new_tensor(self.fixed_scale)

    def scale_value(self) -> float:
        return self.fixed_scale

    def output_size(self, input_size: int | Sequence[int]) -> Size:
        return adaptor_output_sizes(input_size, [self.fixed_scale], "local")[0]

    def forward(self, low: torch.Tensor, high: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return _mix(low, high, self.alpha, _pair(size, "size"), self.residual)

    def extra_repr(self) -> str:
        return f"scale={self.fixed_scale:.4f}, residual={self.residual}"


AnyAdaptor = (ShapeAdaptor, FixedShapeAdaptor)


def shape_penalty(scales: torch.Tensor | Sequence[torch.Tensor], budget: float) -> torch.Tensor:
    """Memory-bounding penalty ``relu(log(prod(scales)) - log(budget))``.

    ``budget`` is the largest allowed product of scales (output side / input side, e.g.
    ``1 / 16``): zero within budget, growing with how far the product exceeds it (in log
    space, so it does not depend on the input size); its gradient pushes the alphas down.
    """
    if not 0.0 < float(budget) <= 1.0:
        raise InputError(f"shape_penalty: budget={budget!r} must lie in (0, 1], e.g. 1/16 (output side / input side)")
    s = scales if isinstance(scales, torch.Tensor) else torch.stack(list(scales))
    return F.relu(torch.log(s).sum() - math.log(budget))


def alpha_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The ``alpha`` logits of every :class:`ShapeAdaptor` in ``model``, in module order."""
    return [m.logit for m in model.modules() if isinstance(m, ShapeAdaptor)]


def shape_adaptor_param_groups(
    model: nn.Module, lr: float, alpha_lr: float, weight_decay: float = 0.0
) -> list[dict[str, Any]]:
    """Optimizer param groups: network weights (``lr``, ``weight_decay``) and alphas (``alpha_lr``).

    Alphas get no weight decay: decay would pull every logit to 0 (``alpha = 0.5``). Only
    parameters with ``requires_grad`` are included; an empty group is left out.
    """
    alphas = alpha_parameters(model)
    alpha_ids = {id(p) for p in alphas}
    weights = [p for p in model.parameters() if p.requires_grad and id(p) not in alpha_ids]
    alphas = [p for p in alphas if p.requires_grad]
    groups = [
        {"params": weights, "lr": lr, "weight_decay": weight_decay, "name": "weights"},
        {"params": alphas, "lr": alpha_lr, "weight_decay": 0.0, "name": "alphas"},
    ]
    return [g for g in groups if g["params"]]


@dataclass(frozen=True)
class AdaptorShape:
    """One adaptor's learned shape for a given input size."""

    position: str  #: where it sits: ``stem`` or ``layerL.B``
    alpha: float
    scale: float
    output_size: Size

    def __str__(self) -> str:
        h, w = self.output_size
        return f"{self.position}: alpha={self.alpha:.3f} scale={self.scale:.3f} -> {h}x{w}"


# --------------------------------------------------------------------------- ResNet


def _residual_path(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``F(x)`` of a torchvision BasicBlock / Bottleneck: the block without shortcut and final ReLU."""
    out = block.relu(block.bn1(block.conv1(x)))
    out = block.bn2(block.conv2(out))
    if hasattr(block, "conv3"):  # Bottleneck
        out = block.bn3(block.conv3(block.relu(out)))
    return out


class ShapeAdaptorBlock(nn.Module):
    """A ResNet block as a ResNet-style shape adaptor: ``forward(x, size) -> relu(mix(proj(x), F(x)))``.

    ``shortcut`` (1x1 conv stride 2 + BN) is the ``r1`` branch, the block's residual path
    ``F(x)`` (stride 1) the ``r2`` branch.
    """

    def __init__(self, block: nn.Module, shortcut: nn.Module, adaptor: ShapeAdaptor | FixedShapeAdaptor) -> None:
        super().__init__()
        self.block, self.shortcut, self.adaptor = block, shortcut, adaptor

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        return self.block.relu(self.adaptor(self.shortcut(x), _residual_path(self.block, x), size))


def _unstride(module: nn.Module) -> None:
    """Set every convolution's stride in ``module`` to 1 (sizes are left to the adaptors)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            m.stride = (1, 1)
    if not isinstance(module, nn.Conv2d) and hasattr(module, "stride"):
        module.stride = 1  # torchvision blocks record their stride


def _projection(channels: int) -> nn.Sequential:
    """A new 1x1 stride-2 shortcut + BN, Dirac-initialised: it starts as a strided identity."""
    conv = nn.Conv2d(channels, channels, 1, stride=2, bias=False)
    nn.init.dirac_(conv.weight)
    return nn.Sequential(conv, nn.BatchNorm2d(channels))


class ShapeAdaptorResNet(nn.Module):
    """A ResNet encoder whose resizing is learned by shape adaptors (smp encoder protocol).

    ``forward(x (N, C, H, W)) -> [x, stem, layer1, ..., layer{depth-1}]``, any ``H, W``; feature
    sides follow the adaptors' scales (see the module docstring for what is replaced).

    Args:
        resnet: a torchvision ``ResNet`` or smp's ResNet encoder; its modules are copied
            (weights kept), the argument is left unchanged.
        input_size: training input side, used to derive the number of adaptors and their
            initial scale (any input size runs).
        min_output_size: the output side with every alpha at 0; sets the number of adaptors
            ``round(log(input_size / min_output_size) / log(1 / r1))`` (paper: 2).
        init_output_size: output side at initialisation (default ``input_size / 32``, the
            plain ResNet's shape).
        num_adaptors: override the derived number of adaptors.
        r1, r2: branch scales, ``0 < r1 < r2 <= 1``.
        size_rule: ``local`` or ``global``.
        depth: smp stages returned, 1 to 5 (default: the smp encoder's depth, else 5).
    """

    task = "encoder"
    #: Side multiple the input needs: any size works (decoders read this to skip padding).
    pad_multiple = 1

    def __init__(
        self,
        resnet: nn.Module,
        input_size: int = 224,
        min_output_size: float = 2,
        init_output_size: float | None = None,
        num_adaptors: int | None = None,
        r1: float = 0.5,
        r2: float = 1.0,
        size_rule: str = "local",
        depth: int | None = None,
    ) -> None:
        super().__init__()
        from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

        if not isinstance(resnet, ResNet):
            raise InputError(
                f"convert_resnet: got {type(resnet).__name__}; give a torchvision ResNet or an smp "
                "ResNet encoder (e.g. torchvision.models.resnet18())"
            )
        self.r1, self.r2 = check_ratios(r1, r2)
        self.size_rule = check_size_rule(size_rule)
        depth = int(getattr(resnet, "_depth", 5)) if depth is None else depth
        check_int(depth, "ShapeAdaptorResNet: depth", minimum=1, maximum=5)
        self.input_size = check_int(input_size, "ShapeAdaptorResNet: input_size (the training image side)", minimum=1)
        if isinstance(min_output_size, bool) or not isinstance(min_output_size, (int, float)) or min_output_size <= 0:
            raise InputError(f"ShapeAdaptorResNet: min_output_size={min_output_size!r} must be a positive number")
        n = number_of_adaptors(self.input_size, min_output_size, self.r1)
        if num_adaptors is not None:
            n = check_int(num_adaptors, "ShapeAdaptorResNet: num_adaptors (or None to derive it)", minimum=0)
        init_out = self.input_size / 32 if init_output_size is None else float(init_output_size)
        if not 0 < init_out <= self.input_size:
            raise InputError(
                f"ShapeAdaptorResNet: init_output_size={init_output_size!r} must lie in "
                f"(0, input_size={self.input_size}]"
            )
        self.depth = depth

        self.conv1, self.bn1 = copy.deepcopy(resnet.conv1), copy.deepcopy(resnet.bn1)
        self.relu, self.maxpool = copy.deepcopy(resnet.relu), copy.deepcopy(resnet.maxpool)
        _unstride(self.conv1)
        layers = [copy.deepcopy(getattr(resnet, f"layer{i}")) for i in range(1, depth)]
        for layer in layers:
            for block in layer:
                if not isinstance(block, (BasicBlock, Bottleneck)):
                    raise InputError(
                        f"convert_resnet: block {type(block).__name__} is not a torchvision "
                        "BasicBlock/Bottleneck; give a torchvision-style ResNet"
                    )
                _unstride(block)

        # Candidates: the stem, then every block except the network's last one (as in the paper).
        candidates = ["stem"] + [f"layer{i}.{j}" for i, layer in enumerate(layers, 1) for j in range(len(layer))]
        if len(candidates) > 1:
            candidates = candidates[:-1]
        if n > len(candidates):
            raise InputError(
                f"ShapeAdaptorResNet: {n} adaptors needed for input_size={self.input_size} and "
                f"min_output_size={min_output_size}, but this ResNet has only {len(candidates)} "
                "positions; raise min_output_size or pass num_adaptors"
            )
        chosen = {candidates[(i * len(candidates)) // n] for i in range(n)}
        alpha0 = initial_alpha(self.input_size, init_out, n, self.r1, self.r2)

        self.stem_adaptor = ShapeAdaptor(self.r1, self.r2, alpha0) if "stem" in chosen else None
        for i, layer in enumerate(layers, 1):
            for j, block in enumerate(layer):
                if f"layer{i}.{j}" not in chosen:
                    continue
                shortcut = block.downsample
                block.downsample = None  # the shortcut now lives in the adaptor block
                if shortcut is None:
                    shortcut = _projection(_block_out_channels(block))  # identity shortcut: in == out channels
                else:
                    shortcut[0].stride = (2, 2)  # the ResNet projection itself becomes the r1 branch
                layer[j] = ShapeAdaptorBlock(block, shortcut, ShapeAdaptor(self.r1, self.r2, alpha0, residual=True))
        self.layers = nn.ModuleList(layers)
        self.positions = [c for c in candidates if c in chosen]

        widths = [self.conv1.out_channels] + [_block_out_channels(layer[-1]) for layer in layers]
        self._out_channels = [self.conv1.in_channels, *widths]

    @property
    def out_channels(self) -> list[int]:
        """Channels of ``[x, stem, layer1, ...]`` (smp protocol)."""
        return list(self._out_channels)

    def adaptors(self) -> list[ShapeAdaptor | FixedShapeAdaptor]:
        """The adaptors in forward order."""
        return [m for m in self.modules() if isinstance(m, AnyAdaptor)]

    def scales(self) -> torch.Tensor:
        """(n,) scales ``s(alpha)`` in forward order, with gradient (for :func:`shape_penalty`)."""
        adaptors = self.adaptors()
        if not adaptors:
            return self.conv1.weight.new_zeros(0)
        return torch.stack([a.scale().to(self.conv1.weight.dtype) for a in adaptors])

    def scale_values(self) -> list[float]:
        """Scales as Python floats."""
        # One device-to-host copy for all adaptors: sizes are Python ints; alpha's gradient
        # flows through the mixing weights, never through the sizes.
        return self.scales().detach().cpu().tolist()

    def output_sizes(self, input_size: int | Sequence[int]) -> list[Size]:
        """(H, W) after each adaptor for an input of ``input_size``."""
        return adaptor_output_sizes(input_size, self.scale_values(), self.size_rule)

    def memory_penalty(self, budget: float) -> torch.Tensor:
        """:func:`shape_penalty` of this encoder's scales (budget: max output side / input side)."""
        return shape_penalty(self.scales(), budget)

    def learned_shapes(self, input_size: int | Sequence[int] | None = None) -> list[AdaptorShape]:
        """Per adaptor: position, alpha, scale and output size for ``input_size`` (default: ``self.input_size``)."""
        adaptors = self.adaptors()
        sizes = self.output_sizes(self.input_size if input_size is None else input_size)
        alphas = torch.stack([a.alpha.detach().float() for a in adaptors]).cpu().tolist() if adaptors else []
        return [AdaptorShape(p, a, s, hw) for p, a, s, hw in zip(self.positions, alphas, self.scale_values(), sizes)]

    def export_fixed(self) -> ShapeAdaptorResNet:
        """A copy whose adaptors are frozen at their current shape (:class:`FixedShapeAdaptor`, no alpha parameter)."""
        fixed = copy.deepcopy(self)
        for name, module in list(fixed.named_modules()):
            if isinstance(module, ShapeAdaptor):
                parent_name, _, child = name.rpartition(".")
                setattr(fixed.get_submodule(parent_name), child, module.freeze())
        return fixed

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self._out_channels[0]:
            raise InputError(
                f"ShapeAdaptorResNet: input must be (N, {self._out_channels[0]}, H, W), got {tuple(x.shape)}"
            )
        sizes: Iterator[Size] = iter(self.output_sizes(tuple(x.shape[-2:])))
        features = [x]
        x = self.relu(self.bn1(self.conv1(x)))
        if self.stem_adaptor is not None:
            x = self.stem_adaptor(self.maxpool(x), x, next(sizes))
        features.append(x)
        for layer in self.layers:
            for block in layer:
                x = block(x, next(sizes)) if isinstance(block, ShapeAdaptorBlock) else block(x)
            features.append(x)
        return features

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, adaptors={len(self.positions)}, r1={self.r1}, r2={self.r2}, "
            f"size_rule={self.size_rule!r}, depth={self.depth}"
        )


def _block_out_channels(block: nn.Module) -> int:
    block = block.block if isinstance(block, ShapeAdaptorBlock) else block
    return (block.bn3 if hasattr(block, "conv3") else block.bn2).num_features


def convert_resnet(resnet: nn.Module, **kwargs: Any) -> ShapeAdaptorResNet:
    """A shape adaptor copy of a torchvision ResNet or smp ResNet encoder (arguments: :class:`ShapeAdaptorResNet`)."""
    return ShapeAdaptorResNet(resnet, **kwargs)


def _build(arch: str, in_channels: int, depth: int, **kwargs: Any) -> ShapeAdaptorResNet:
    import torchvision

    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise InputError(f"shape_adaptor_{arch}: in_channels={in_channels!r} must be a positive int (3 for RGB)")
    resnet = getattr(torchvision.models, arch)(weights=None)  # random init; never downloads
    if in_channels != 3:
        resnet.conv1 = nn.Conv2d(in_channels, resnet.conv1.out_channels, 7, stride=2, padding=3, bias=False)
    return ShapeAdaptorResNet(resnet, depth=depth, **kwargs)


@register_model
def shape_adaptor_resnet18(
    in_channels: int = 3,
    depth: int = 5,
    input_size: int = 224,
    min_output_size: float = 2,
    init_output_size: float | None = None,
    num_adaptors: int | None = None,
    r1: float = 0.5,
    r2: float = 1.0,
    size_rule: str = "local",
) -> ShapeAdaptorResNet:
    """Shape Adaptor resnet18 encoder (random init; arguments: ShapeAdaptorResNet)."""
    return _build(
        "resnet18",
        in_channels,
        depth,
        input_size=input_size,
        min_output_size=min_output_size,
        init_output_size=init_output_size,
        num_adaptors=num_adaptors,
        r1=r1,
        r2=r2,
        size_rule=size_rule,
    )


@register_model
def shape_adaptor_resnet34(
    in_channels: int = 3,
    depth: int = 5,
    input_size: int = 224,
    min_output_size: float = 2,
    init_output_size: float | None = None,
    num_adaptors: int | None = None,
    r1: float = 0.5,
    r2: float = 1.0,
    size_rule: str = "local",
) -> ShapeAdaptorResNet:
    """Shape Adaptor resnet34 encoder (random init; arguments: ShapeAdaptorResNet)."""
    return _build(
        "resnet34",
        in_channels,
        depth,
        input_size=input_size,
        min_output_size=min_output_size,
        init_output_size=init_output_size,
        num_adaptors=num_adaptors,
        r1=r1,
        r2=r2,
        size_rule=size_rule,
    )


@register_model
def shape_adaptor_resnet50(
    in_channels: int = 3,
    depth: int = 5,
    input_size: int = 224,
    min_output_size: float = 2,
    init_output_size: float | None = None,
    num_adaptors: int | None = None,
    r1: float = 0.5,
    r2: float = 1.0,
    size_rule: str = "local",
) -> ShapeAdaptorResNet:
    """Shape Adaptor resnet50 encoder (random init; arguments: ShapeAdaptorResNet)."""
    return _build(
        "resnet50",
        in_channels,
        depth,
        input_size=input_size,
        min_output_size=min_output_size,
        init_output_size=init_output_size,
        num_adaptors=num_adaptors,
        r1=r1,
        r2=r2,
        size_rule=size_rule,
    )
