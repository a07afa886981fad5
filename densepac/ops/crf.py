"""PAC-CRF (Su et al., CVPR 2019, section 4.2): mean-field inference whose messages are PAC.

One mean-field step, for class scores ``unary`` (N, L, H, W) and current marginals ``Q``::

    m_k[l](i)   = sum_{j != i} K(f^k_i, f^k_j) w_k[p_j - p_i] Q[l](j)     (PAC, depthwise over l)
    pairwise(i) = sum_k mu_k @ m_k(i)                                     (1x1 over classes)
    logits      = unary - pairwise,   Q = softmax(logits)

Conventions fixed here:

* **Sign.** ``mu_k[l, l']`` is an *energy*: the cost of label ``l`` at ``i`` per unit of
  neighbour mass on ``l'``. It is subtracted from the logits. The Potts initialisation is
  ``mu = -w * I`` (agreeing neighbours lower the energy, i.e. raise the logit); it equals the
  textbook ``w * (1 - I)`` up to a per-pixel constant (``w * sum_l' m[l']``, the same for every
  label) that the softmax ignores.
* **Centre.** The spatial filter's centre tap is masked to zero, so a pixel never messages
  itself; its parameter exists (a plain square tensor) but gets no gradient.
* **Features.** ``f^k = [s_k * guide, t_k * xy / reach_k]`` where ``guide`` is e.g. RGB in
  [0, 1], ``xy`` pixel coordinates of the logits grid and ``reach_k = dilation * (ksize // 2)``
  the kernel's radius in pixels. ``s_k`` and ``t_k`` are learnt through their logarithms (so
  they stay positive).
* **Memory.** Messages use :func:`~densepac.ops.pac.pac_conv2d`, which loops over taps and
  recomputes kernels in backward; nothing of size ``ksize**2`` times a feature map is built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from densepac.check import check_int
from densepac.errors import InputError, InputTypeError
from densepac.ops.kernels import get_kernel
from densepac.ops.labels import PredictsLabels
from densepac.ops.pac import pac_conv2d

GUIDE_FEATURES = ("rgb", "rgbxy")
SPATIAL_INITS = ("gaussian", "uniform")


def scaled_dilation(dilation: int, image_size: int | tuple[int, int], reference: int = 512) -> int:
    """Dilation that covers the same fraction of an image of ``image_size`` as ``dilation`` at ``reference``.

    ``image_size`` is a side length or ``(H, W)``; for a rectangle the linear size is
    ``sqrt(H * W)``. The result is rounded and at least 1.
    """
    check_int(dilation, "dilation", minimum=1)
    check_int(reference, "reference", minimum=1)
    if isinstance(image_size, int):
        size = float(image_size)
    elif isinstance(image_size, Sequence) and len(image_size) == 2:
        size = math.sqrt(int(image_size[0]) * int(image_size[1]))
    else:
        raise InputError(f"image_size must be an int or (H, W), got {image_size!r}")
    if size <= 0:
        raise InputError(f"image_size must be positive, got {image_size!r}")
    return max(1, round(dilation * size / reference))


def _check_4d(name: str, t: torch.Tensor, what: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise InputTypeError(f"{name} must be a torch.Tensor {what}, got {type(t).__name__}")
    if t.dim() != 4:
        raise InputError(f"{name} must be {what}, got shape {tuple(t.shape)}")


def pixel_positions(
    height: int, width: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """(1, 2, H, W) pixel coordinates (y, x) of a ``height`` x ``width`` grid."""
    ys = torch.arange(height, dtype=dtype, device=device)
    xs = torch.arange(width, dtype=dtype, device=device)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij")).unsqueeze(0)


def crf_guide_features(
    guide: torch.Tensor, guide_scale: torch.Tensor, pos_scale: torch.Tensor | None = None, reach: float = 1.0
) -> torch.Tensor:
    """Adapting features of one pairwise kernel.

    Args:
        guide: (N, C, H, W), e.g. RGB in [0, 1].
        guide_scale: scalar tensor multiplying ``guide``.
        pos_scale: scalar tensor multiplying ``xy / reach``, or None for no position features.
        reach: the kernel radius in pixels; position is measured in its units.

    Returns:
        (N, C, H, W), or (N, C + 2, H, W) with position features.
    """
    _check_4d("guide", guide, "(N, C, H, W)")
    feats = guide * guide_scale
    if pos_scale is None:
        return feats
    n, _, h, w = guide.shape
    pos = pixel_positions(h, w, dtype=guide.dtype, device=guide.device) * (pos_scale / reach)
    return torch.cat([feats, pos.expand(n, -1, -1, -1)], dim=1)


def _centre_masked(spatial_weight: torch.Tensor) -> torch.Tensor:
    if spatial_weight.dim() != 2 or spatial_weight.shape[0] % 2 == 0 or spatial_weight.shape[1] % 2 == 0:
        raise InputError(f"spatial_weight must be (kH, kW) with odd sizes, got {tuple(spatial_weight.shape)}")
    mask = torch.ones_like(spatial_weight, requires_grad=False)
    mask[spatial_weight.shape[0] // 2, spatial_weight.shape[1] // 2] = 0
    return spatial_weight * mask


def pac_crf_message(
    q: torch.Tensor,
    features: torch.Tensor,
    spatial_weight: torch.Tensor,
    dilation: int = 1,
    normalize: bool = False,
    kernel_type: str = "gaussian",
) -> torch.Tensor:
    """Messages ``m[l](i) = sum_{j != i} K(f_i, f_j) w[p_j - p_i] q[l](j)`` ("same" padding).

    Args:
        q: (N, L, H, W) marginals (or any per-class maps).
        features: (N, Cf, H, W) adapting features.
        spatial_weight: (kH, kW), odd sizes, shared by every class; its centre is ignored.
        dilation: tap spacing in pixels.
        normalize: divide by ``sum_j K(f_i, f_j)`` over in-image taps (centre included).

    Returns:
        (N, L, H, W).
    """
    _check_4d("q", q, "(N, L, H, W)")
    _check_4d("features", features, "(N, Cf, H, W)")
    w = _centre_masked(spatial_weight).to(q.dtype)
    kh, kw = w.shape
    num_classes = q.shape[1]
    # Depthwise: groups = L with one filter repeated, so every class is smoothed alike.
    weight = w.expand(num_classes, 1, kh, kw)
    padding = (dilation * (kh // 2), dilation * (kw // 2))
    return pac_conv2d(q, features, weight, None, 1, padding, dilation, kernel_type, normalize, groups=num_classes)


def apply_compatibility(messages: torch.Tensor, compat: torch.Tensor) -> torch.Tensor:
    """``out[l] = sum_l' compat[l, l'] * messages[l']``: (N, L, H, W), (L, L) -> (N, L, H, W)."""
    if compat.dim() != 2 or compat.shape[0] != compat.shape[1] or compat.shape[0] != messages.shape[1]:
        raise InputError(f"compat must be (L, L) with L={messages.shape[1]}, got {tuple(compat.shape)}")
    return F.conv2d(messages, compat.to(messages.dtype)[:, :, None, None])


def pac_crf_step(
    unary: torch.Tensor,
    q: torch.Tensor,
    features: Sequence[torch.Tensor],
    spatial_weights: Sequence[torch.Tensor],
    compats: Sequence[torch.Tensor],
    dilations: Sequence[int],
    normalize: bool = False,
    kernel_type: str = "gaussian",
) -> torch.Tensor:
    """One mean-field update: ``unary - sum_k compats[k] @ message_k(q)``.

    Args:
        unary: (N, L, H, W) logits.
        q: (N, L, H, W) current marginals.
        features, spatial_weights, compats, dilations: one entry per pairwise kernel,
            (N, Cf_k, H, W), (kH_k, kW_k), (L, L), int.

    Returns:
        (N, L, H, W) logits; ``softmax`` of them is the next ``q``.
    """
    if not (len(features) == len(spatial_weights) == len(compats) == len(dilations)):
        raise InputError(
            "features, spatial_weights, compats and dilations need one entry per kernel, got "
            f"{len(features)}, {len(spatial_weights)}, {len(compats)}, {len(dilations)}"
        )
    logits = unary
    for f, w, mu, d in zip(features, spatial_weights, compats, dilations):
        logits = logits - apply_compatibility(pac_crf_message(q, f, w, d, normalize, kernel_type), mu)
    return logits


def pac_crf(
    unary: torch.Tensor,
    features: Sequence[torch.Tensor],
    spatial_weights: Sequence[torch.Tensor],
    compats: Sequence[torch.Tensor],
    dilations: Sequence[int],
    num_steps: int = 5,
    normalize: bool = False,
    kernel_type: str = "gaussian",
) -> torch.Tensor:
    """Mean-field PAC-CRF from ``Q = softmax(unary)``; (N, L, H, W) -> (N, L, H, W) logits.

    ``num_steps = 0`` returns ``unary`` itself. Arguments as :func:`pac_crf_step`.
    """
    _check_4d("unary", unary, "(N, L, H, W) logits")
    if num_steps < 0:
        raise InputError(f"num_steps must be >= 0, got {num_steps}")
    for k, f in enumerate(features):
        _check_4d(f"features[{k}]", f, "(N, Cf, H, W)")
        if f.shape[0] != unary.shape[0] or f.shape[-2:] != unary.shape[-2:]:
            raise InputError(
                f"features[{k}] must be (N={unary.shape[0]}, Cf, {unary.shape[2]}, {unary.shape[3]}) "
                f"like the unary, got {tuple(f.shape)}"
            )
    logits = unary
    for _ in range(num_steps):
        logits = pac_crf_step(
            unary, logits.softmax(1), features, spatial_weights, compats, dilations, normalize, kernel_type
        )
    return logits


def _init_spatial(kernel_size: int, init: str, normalize: bool) -> torch.Tensor:
    """Centre-free spatial filter: sums to 1 (``normalize=False``) or averages 1 per tap (``True``).

    Either way a flat region (all K = 1) initially passes on roughly the neighbours' mean
    marginal, so the Potts weight means the same thing with or without normalization.
    """
    r = torch.arange(kernel_size, dtype=torch.float64) - kernel_size // 2
    if init == "gaussian":
        sigma = kernel_size / 4.0
        w = torch.exp(-0.5 * (r[:, None] ** 2 + r[None, :] ** 2) / sigma**2)
    else:
        w = torch.ones(kernel_size, kernel_size, dtype=torch.float64)
    w[kernel_size // 2, kernel_size // 2] = 0
    w = w / w.sum()
    return (w * kernel_size**2 if normalize else w).to(torch.get_default_dtype())


def _check_kernels(kernels: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    try:
        out = [(int(k), int(d)) for k, d in kernels]
    except (TypeError, ValueError):
        raise InputError(f"kernels must be a sequence of (kernel_size, dilation) pairs, got {kernels!r}") from None
    if not out:
        raise InputError("kernels must hold at least one (kernel_size, dilation) pair")
    for k, d in out:
        if k < 3 or k % 2 == 0 or d < 1:
            raise InputError(f"each kernel needs an odd kernel_size >= 3 and a dilation >= 1, got ({k}, {d})")
    return out


class PacCRF(nn.Module):
    """Mean-field CRF with PAC messages: ``forward(unary (N,L,H,W), guide (N,C,H',W')) -> (N,L,H,W)``.

    Args:
        num_classes: L.
        num_steps: mean-field iterations (0: identity).
        kernels: one ``(kernel_size, dilation)`` per pairwise kernel (odd sizes >= 3).
        guide_features: ``"rgb"``: the guide's channels; ``"rgbxy"``: plus pixel position.
        guide_scale: initial ``s_k``; 10 means guide differences of 0.1 (about 25/255 on RGB
            in [0, 1]) count as one standard deviation.
        pos_scale: initial ``t_k``; 1 means position is measured in kernel radii.
        spatial_init: ``"gaussian"`` (sigma = kernel_size / 4 taps) or ``"uniform"``.
        potts_weight: initial ``w`` of ``mu_k = -w * I``.
        normalize: normalize each message by its kernel sum (see :func:`pac_crf_message`).
        kernel_type: PAC kernel (``"gaussian"``, ``"cauchy"``).
        dilation_reference: when set, each kernel's dilation is rescaled per input with
            :func:`scaled_dilation` (``reference`` = this) from the logits' size.

    Parameters (state-dict keys): ``log_guide_scale`` (n_kernels,), ``log_pos_scale``
    (n_kernels,) with ``"rgbxy"``, ``spatial.<k>`` (ks, ks), ``compat`` (n_kernels, L, L).
    The guide is resized (bilinear) to the logits' size when they differ. float16/bfloat16
    logits are refined in float32 and returned in their own dtype. A non-finite guide value
    is not checked for: it spreads at most ``num_steps`` kernel radii (see ``densepac.ops.pac``).
    """

    def __init__(
        self,
        num_classes: int,
        num_steps: int = 5,
        kernels: Sequence[tuple[int, int]] = ((5, 1),),
        guide_features: str = "rgb",
        *,
        guide_scale: float = 10.0,
        pos_scale: float = 1.0,
        spatial_init: str = "gaussian",
        potts_weight: float = 1.0,
        normalize: bool = False,
        kernel_type: str = "gaussian",
        dilation_reference: int | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise InputError(f"num_classes must be >= 1, got {num_classes}")
        if num_steps < 0:
            raise InputError(f"num_steps must be >= 0, got {num_steps}")
        if guide_features not in GUIDE_FEATURES:
            raise InputError(f"guide_features must be one of {GUIDE_FEATURES}, got {guide_features!r}")
        if spatial_init not in SPATIAL_INITS:
            raise InputError(f"spatial_init must be one of {SPATIAL_INITS}, got {spatial_init!r}")
        if guide_scale <= 0 or pos_scale <= 0:
            raise InputError(f"guide_scale and pos_scale must be > 0, got {guide_scale}, {pos_scale}")
        if dilation_reference is not None and dilation_reference < 1:
            raise InputError(f"dilation_reference must be a positive int or None, got {dilation_reference}")
        get_kernel(kernel_type)
        self.kernels = _check_kernels(kernels)
        self.num_classes, self.num_steps = num_classes, num_steps
        self.guide_features, self.normalize, self.kernel_type = guide_features, normalize, kernel_type
        self.dilation_reference = dilation_reference
        nk = len(self.kernels)
        self.log_guide_scale = nn.Parameter(torch.full((nk,), math.log(guide_scale)))
        self.log_pos_scale = nn.Parameter(torch.full((nk,), math.log(pos_scale))) if guide_features == "rgbxy" else None
        self.spatial = nn.ParameterList(
            nn.Parameter(_init_spatial(k, spatial_init, normalize)) for k, _ in self.kernels
        )
        self.compat = nn.Parameter(-potts_weight * torch.eye(num_classes).repeat(nk, 1, 1))

    def dilations(self, size: tuple[int, int]) -> list[int]:
        """Each kernel's dilation for logits of spatial ``size`` (H, W)."""
        if self.dilation_reference is None:
            return [d for _, d in self.kernels]
        return [scaled_dilation(d, size, self.dilation_reference) for _, d in self.kernels]

    def features(self, guide: torch.Tensor, dilations: Sequence[int]) -> list[torch.Tensor]:
        """Per-kernel adapting features of a guide already at the logits' size."""
        feats = []
        for k, ((ks, _), d) in enumerate(zip(self.kernels, dilations)):
            pos = None if self.log_pos_scale is None else self.log_pos_scale[k].exp()
            feats.append(crf_guide_features(guide, self.log_guide_scale[k].exp(), pos, reach=float(d * (ks // 2))))
        return feats

    def forward(self, unary: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        _check_4d("unary", unary, f"(N, {self.num_classes}, H, W) logits")
        _check_4d("guide", guide, "(N, C, H, W)")
        if unary.shape[1] != self.num_classes:
            raise InputError(f"unary must be (N, {self.num_classes}, H, W) logits, got {tuple(unary.shape)}")
        if guide.shape[0] != unary.shape[0]:
            raise InputError(
                f"guide batch {guide.shape[0]} != unary batch {unary.shape[0]}; expected ({unary.shape[0]}, C, H, W)"
            )
        if not unary.is_floating_point():
            raise InputTypeError(f"unary must be floating point, got {unary.dtype}")
        size = tuple(unary.shape[-2:])
        # Half/bfloat16 logits are refined in float32 and returned in their own dtype: scaled
        # guide features (guide * s_k) and their squared differences overflow float16 long
        # before float32. Parameters follow (e.g. float64 under a gradient check).
        cdt = torch.promote_types(unary.dtype, torch.float32)
        guide = guide.to(cdt)
        if tuple(guide.shape[-2:]) != size:
            shrink = guide.shape[-2] > size[0] or guide.shape[-1] > size[1]
            guide = F.interpolate(guide, size=size, mode="bilinear", align_corners=False, antialias=shrink)
        dilations = self.dilations(size)
        spatial = [w.to(cdt) for w in self.spatial]
        logits = pac_crf(
            unary.to(cdt),
            self.features(guide, dilations),
            spatial,
            list(self.compat.to(cdt)),
            dilations,
            self.num_steps,
            self.normalize,
            self.kernel_type,
        )
        return logits.to(unary.dtype)

    def extra_repr(self) -> str:
        s = (
            f"num_classes={self.num_classes}, num_steps={self.num_steps}, kernels={self.kernels}, "
            f"guide_features={self.guide_features!r}, normalize={self.normalize}, kernel_type={self.kernel_type!r}"
        )
        if self.dilation_reference is not None:
            s += f", dilation_reference={self.dilation_reference}"
        return s


class CRFWrapped(PredictsLabels):
    """A segmentation model followed by a :class:`PacCRF` guided by the input image.

    ``forward(image (N,3,H,W) RGB in [0,1]) -> crf(model(image), image)``, (N, L, h, w) at the
    model's logits resolution. :meth:`freeze_backbone` supports staged training (CRF first).
    Kept free of ``densepac.models`` imports so ``densepac.ops`` never imports the registry.
    """

    task = "segmentation"

    def __init__(self, model: nn.Module, crf: PacCRF) -> None:
        super().__init__()
        if not isinstance(crf, PacCRF):
            raise InputTypeError(f"crf must be a PacCRF, got {type(crf).__name__}")
        model_classes = getattr(model, "num_classes", None)
        if model_classes is not None and model_classes != crf.num_classes:
            raise InputError(f"model predicts {model_classes} classes but the CRF expects {crf.num_classes}")
        self.model, self.crf = model, crf
        self.num_classes = crf.num_classes
        self.backbone_frozen = False

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[1] != 3:
            raise InputError(f"image must be (N, 3, H, W) RGB in [0, 1], got {tuple(getattr(image, 'shape', ()))}")
        return self.crf(self.model(image), image)

    def freeze_backbone(self, freeze: bool = True) -> CRFWrapped:
        """Stop (or restart) training the wrapped model; the CRF stays trainable.

        Frozen, the whole backbone stays in eval mode (BatchNorm on running statistics,
        dropout off) even after ``.train()``, so its output is fixed while the CRF learns.
        """
        self.backbone_frozen = bool(freeze)
        for p in self.model.parameters():
            p.requires_grad_(not freeze)
        return self.train(self.training)

    def train(self, mode: bool = True) -> CRFWrapped:
        super().train(mode)
        if self.backbone_frozen:
            self.model.eval()
        return self
