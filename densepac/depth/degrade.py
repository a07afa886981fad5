"""Simulated low-resolution depth: downsampling protocols, sensor noise and holes.

All functions work on numpy float ``(H, W)`` depth maps in metres, where ``0`` or a
non-finite value means missing, and return float32 copies (inputs are never modified).
They run inside dataset workers, before tensors exist, hence numpy rather than torch.

Alignment: low-resolution (LR) maps are aligned to the high-resolution (HR) grid by pixel
areas. HR pixel centre ``y`` maps to LR coordinate ``(y + 0.5) / s - 0.5``, so LR pixel
``i`` is centred on HR coordinate ``s * i + (s - 1) / 2`` (``align_corners=False``).

Protocols used in the literature:

- ``"point"`` (PAC, Su et al. 2019): keep every ``s``-th pixel, no filtering.
- ``"area"``: each LR pixel is the mean of the valid HR pixels of its ``s x s`` block, as a
  sensor whose pixels integrate over their footprint (or a depth map binned to a lower
  resolution) reports it; across a depth edge this mixes both surfaces.
- ``"bicubic"`` (DKN, FDSR, DCTNet): antialiased bicubic resize, as PIL's
  ``Image.resize(..., BICUBIC)`` does on a float image.
- ``"mix"``: a realistic sensor drawn per sample (:class:`SensorModel`): one of the three
  above, after optical blur and a misregistration between depth and guide, then
  depth-dependent noise, disparity quantisation and holes (blobs, occlusion shadows at
  edges, glints, dark surfaces). Models trained on it do not need to know how their input
  was sampled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from densepac.check import check_depth_array, check_scale
from densepac.errors import InputError

#: Inverse-depth quantisation step of a Kinect v1 (1/m): disparity in 1/8 px with
#: baseline 7.5 cm and focal length 580 px, i.e. ``1 / (8 * 0.075 * 580)``.
KINECT_V1_INV_DEPTH_STEP = 1.0 / (8 * 0.075 * 580.0)

Protocol = Literal["point", "area", "bicubic", "mix"]
#: How training simulates LR depth: a sampling, the bicubic protocol, or ``"mix"``: a
#: realistic sensor drawn per sample (:class:`SensorModel`, :func:`simulate_sensor`).
PROTOCOLS: tuple[str, ...] = ("point", "area", "bicubic", "mix")


# --------------------------------------------------------------------------- checks


def _as_depth(depth: np.ndarray, name: str = "depth") -> np.ndarray:
    """float32 copy of a 2-D depth map with non-finite and negative values set to 0."""
    out = check_depth_array(depth, name)
    out[out < 0] = 0.0
    return out


def _check_divisible(shape: tuple[int, int], scale: int, name: str = "depth") -> None:
    h, w = shape
    if h % scale or w % scale:
        raise InputError(
            f"{name}: size {h}x{w} is not divisible by scale {scale}; crop it to {h - h % scale}x{w - w % scale} first"
        )


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        # None -> fresh OS entropy: deliberately non-reproducible, as documented.
        return np.random.default_rng(rng)
    raise InputError(f"rng={rng!r}; give a numpy Generator, an int seed or None")


# --------------------------------------------------------------------------- downsampling


def downsample_point(depth: np.ndarray, scale: int) -> np.ndarray:
    """Point-sample every ``scale``-th pixel: ``lr[i, j] = depth[s*i + s//2, s*j + s//2]``.

    The kept HR pixel is the one nearest the LR pixel's centre ``s*i + (s-1)/2``; for even
    ``s`` two pixels tie and the lower/right one (offset ``s // 2``) is taken, the same
    choice as PyTorch's ``F.interpolate(mode="nearest-exact")``. Missing pixels stay missing.

    Args:
        depth: ``(H, W)`` metres, H and W divisible by ``scale``.
        scale: positive integer factor.

    Returns:
        float32 ``(H / s, W / s)`` metres.
    """
    s = check_scale(scale)
    d = _as_depth(depth)
    _check_divisible(d.shape, s)
    return np.ascontiguousarray(d[s // 2 :: s, s // 2 :: s])


def downsample_area(depth: np.ndarray, scale: int) -> np.ndarray:
    """Mean of the valid HR pixels of each ``scale x scale`` block.

    LR pixel ``(i, j)`` covers HR rows ``s*i .. s*i + s - 1`` and the same columns, so it
    is centred on ``s*i + (s-1)/2`` as the alignment convention requires. Missing pixels
    (0 or non-finite) are left out of the mean; a block without a valid pixel is missing.

    Args:
        depth: ``(H, W)`` metres, H and W divisible by ``scale``.
        scale: positive integer factor.

    Returns:
        float32 ``(H / s, W / s)`` metres, 0 where missing.
    """
    s = check_scale(scale)
    d = _as_depth(depth)
    _check_divisible(d.shape, s)
    h, w = d.shape[0] // s, d.shape[1] // s
    blocks = d.astype(np.float64).reshape(h, s, w, s)
    count = (blocks > 0).sum(axis=(1, 3))
    total = blocks.sum(axis=(1, 3))  # missing pixels are 0 after _as_depth
    out = np.zeros((h, w), dtype=np.float64)
    np.divide(total, count, out=out, where=count > 0)
    return out.astype(np.float32)


def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys cubic convolution kernel (a = -0.5, as PIL and OpenCV's bicubic)."""
    x = np.abs(x)
    x2, x3 = x * x, x * x * x
    near = (a + 2) * x3 - (a + 3) * x2 + 1
    far = a * x3 - 5 * a * x2 + 8 * a * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def _bicubic_weights(size: int, scale: int) -> np.ndarray:
    """(size // scale, size) antialiased bicubic weights; rows sum to 1.

    The kernel is stretched by ``scale`` (support 4*s input pixels) around each output
    centre; taps outside the image are dropped and the row renormalized, like PIL.
    """
    out = size // scale
    centres = scale * (np.arange(out) + 0.5)  # in input pixel-edge coordinates
    pos = np.arange(size) + 0.5
    w = _cubic((pos[None, :] - centres[:, None]) / scale)
    return w / w.sum(axis=1, keepdims=True)


def downsample_bicubic(depth: np.ndarray, scale: int, min_valid: float = 0.5) -> np.ndarray:
    """Antialiased bicubic downsampling that ignores missing pixels.

    Each LR pixel is the bicubic-weighted mean of the valid HR pixels in its support,
    normalized by the valid weight, so missing pixels (0) never bleed in. An LR pixel is
    missing when less than ``min_valid`` of its positive (central) kernel mass is valid.
    Without missing pixels this equals PIL's ``Image.resize(..., Image.BICUBIC)`` on a
    float ("F") image. Bicubic overshoot at depth edges is clipped to the range of
    valid input depths, so the output never turns negative.

    Args:
        depth: ``(H, W)`` metres, H and W divisible by ``scale``.
        scale: positive integer factor.
        min_valid: fraction in (0, 1].

    Returns:
        float32 ``(H / s, W / s)`` metres, 0 where missing.
    """
    s = check_scale(scale)
    d = _as_depth(depth)
    _check_divisible(d.shape, s)
    if not 0 < min_valid <= 1:
        raise InputError(f"min_valid={min_valid} must be in (0, 1]")
    if s == 1:
        return d
    valid = (d > 0).astype(np.float64)
    wy = _bicubic_weights(d.shape[0], s)
    wx = _bicubic_weights(d.shape[1], s)
    num = wy @ (d.astype(np.float64) * valid) @ wx.T
    den = wy @ valid @ wx.T
    # Support is judged on the positive lobes only: the negative ones carry little mass
    # and would let a pixel with no valid centre pass.
    py, px = np.maximum(wy, 0), np.maximum(wx, 0)
    support = (py @ valid @ px.T) / (py.sum(axis=1)[:, None] * px.sum(axis=1)[None, :])
    ok = (support >= min_valid) & (den > 1e-6)
    out = np.zeros_like(num)
    out[ok] = num[ok] / den[ok]
    if valid.any():
        lo, hi = float(d[d > 0].min()), float(d.max())
        out[ok] = np.clip(out[ok], lo, hi)
    return out.astype(np.float32)


# --------------------------------------------------------------------------- noise


def add_depth_noise(
    depth: np.ndarray,
    rng: np.random.Generator | int | None,
    sigma: float = 0.0015,
    quant_step: float = 0.0,
) -> np.ndarray:
    """Kinect-like noise: Gaussian with std ``sigma * z**2`` (m), then optional quantisation.

    Structured-light and stereo sensors measure disparity, so the depth error grows with
    the square of the distance (Khoshelham & Elberink 2012: about 1.4 mm at 1 m, 2.3 cm
    at 4 m for a Kinect v1 -> ``sigma ~ 0.0015``).

    Args:
        depth: ``(H, W)`` metres; missing pixels stay missing.
        rng: numpy Generator (or int seed; None = unseeded).
        sigma: noise std at 1 m, in metres (>= 0).
        quant_step: if > 0, round the inverse depth to multiples of this step (1/m);
            :data:`KINECT_V1_INV_DEPTH_STEP` mimics a Kinect v1.

    Returns:
        float32 ``(H, W)`` metres; values pushed to <= 0 by noise become missing (0).
    """
    if not sigma >= 0 or not quant_step >= 0:
        raise InputError(f"add_depth_noise: sigma={sigma} and quant_step={quant_step} must be >= 0")
    d = _as_depth(depth)
    gen = _rng(rng)
    valid = d > 0
    if sigma > 0:
        z = d[valid].astype(np.float64)
        d[valid] = (z + gen.standard_normal(z.shape) * sigma * z * z).astype(np.float32)
    if quant_step > 0:
        ok = d > 0
        inv = np.round(1.0 / (d[ok].astype(np.float64) * quant_step)) * quant_step
        # A depth too far for the sensor rounds to disparity 0: report it missing.
        d[ok] = np.where(inv > 0, 1.0 / np.maximum(inv, 1e-12), 0.0).astype(np.float32)
    d[d < 0] = 0.0
    d[~valid] = 0.0
    return d


# --------------------------------------------------------------------------- holes


def _pair_jumps(d: np.ndarray, rel_jump: float, axis: int) -> np.ndarray:
    """Depth discontinuities between neighbours along ``axis``: shape of ``d`` minus 1 there.

    Inverse depth is affine in image coordinates on a plane, so a slanted surface (even a
    floor seen at a grazing angle) has nearly equal inverse-depth steps between
    neighbours, while an occlusion edge is a step much larger than those next to it.
    A pair is a jump when both depths are valid, its inverse-depth step exceeds
    ``rel_jump`` of the larger inverse depth, and is over 3x both neighbouring steps.
    """
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0)
    moved = np.moveaxis(inv, axis, 0)
    valid = moved > 0
    step = np.abs(np.diff(moved, axis=0))
    both = valid[1:] & valid[:-1]
    step_ok = np.where(both, step, 0.0)
    before = np.concatenate([np.zeros_like(step_ok[:1]), step_ok[:-1]], axis=0)
    after = np.concatenate([step_ok[1:], np.zeros_like(step_ok[:1])], axis=0)
    # max, not min: at a crease (floor meets wall, box edge) depth is continuous and the
    # step matches the slope on one side. The price: an object one pixel thin, whose two
    # edges are adjacent steps, is not seen as a jump.
    local = np.maximum(before, after)
    big = step > rel_jump * np.maximum(moved[1:], moved[:-1])
    return np.moveaxis(both & big & (step > 3.0 * local), 0, axis)


def _far_side_of_jumps(d: np.ndarray, rel_jump: float) -> np.ndarray:
    """Pixels on the far side of a depth discontinuity with a 4-neighbour."""
    far = np.zeros(d.shape, dtype=bool)
    for axis in (0, 1):
        jump = _pair_jumps(d, rel_jump, axis)
        a = d.take(np.arange(d.shape[axis] - 1), axis=axis)
        b = d.take(np.arange(1, d.shape[axis]), axis=axis)
        pad = [(0, 0), (0, 0)]
        pad[axis] = (0, 1)
        far |= np.pad(jump & (a > b), pad)
        pad[axis] = (1, 0)
        far |= np.pad(jump & (b > a), pad)
    return far


def add_holes(
    depth: np.ndarray,
    rng: np.random.Generator | int | None,
    amount: float = 0.02,
    shadow_width: int = 2,
    rel_jump: float = 0.05,
    edge_dropout: float = 0.3,
    specular: int = 3,
) -> np.ndarray:
    """Remove depth like a real sensor: random blobs, edge shadows and specular dropouts.

    - Blobs: irregular missing regions (absorbing or out-of-range surfaces) until about
      ``amount`` of the pixels are gone.
    - Shadows: at a depth discontinuity (an inverse-depth step above ``rel_jump``
      relative and well above the surface's own slope), the far side loses a band up
      to ``shadow_width`` px wide on the left of the near object, like the
      occlusion shadow of a Kinect's projector or of the second camera of a stereo pair;
      ``edge_dropout`` of the remaining far-side edge pixels drop out too (mixed pixels).
    - Specular: ``specular`` small ellipses (glints) anywhere.

    Args:
        depth: ``(H, W)`` metres.
        rng: numpy Generator (or int seed; None = unseeded).

    Returns:
        float32 ``(H, W)`` metres with the new holes set to 0.
    """
    if not 0 <= amount < 1:
        raise InputError(f"add_holes: amount={amount} must be a fraction in [0, 1)")
    if shadow_width < 0 or specular < 0 or not 0 <= edge_dropout <= 1 or rel_jump <= 0:
        raise InputError("add_holes: need shadow_width >= 0, specular >= 0, 0 <= edge_dropout <= 1 and rel_jump > 0")
    d = _as_depth(depth)
    gen = _rng(rng)
    h, w = d.shape
    holes = np.zeros((h, w), dtype=bool)

    if shadow_width > 0 or edge_dropout > 0:
        far = _far_side_of_jumps(d, rel_jump)
        # Far-side pixels whose right-hand neighbour is nearer start a shadow that falls
        # leftwards over the farther surface only.
        start = np.zeros_like(far)
        start[:, :-1] = _pair_jumps(d, rel_jump, 1) & (d[:, :-1] > d[:, 1:])
        shadow = start.copy()
        for k in range(1, min(shadow_width, w - 1)):
            # Pixel x is k to the left of a start at x + k, whose occluder is at x + k + 1.
            behind = d[:, : w - k - 1] > d[:, k + 1 :] * (1 + rel_jump)
            shadow[:, : w - k - 1] |= start[:, k : w - 1] & behind
        holes |= shadow
        holes |= far & (gen.random((h, w)) < edge_dropout)

    if amount > 0:
        target = amount * h * w
        # Correlation length ~5 % of the image: a few blobs rather than salt noise.
        blob_sigma = max(1.0, 0.05 * min(h, w))
        noise = ndimage.gaussian_filter(gen.standard_normal((h, w)), sigma=blob_sigma, mode="wrap")
        # Threshold a smooth random field at its (1 - amount) quantile: irregular blobs
        # of the requested area.
        threshold = np.quantile(noise, 1.0 - amount) if target >= 1 else np.inf
        holes |= noise > threshold

    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(specular):
        cy, cx = gen.uniform(0, h), gen.uniform(0, w)
        ry = gen.uniform(0.5, max(0.6, 0.015 * min(h, w) + 0.5))
        rx = gen.uniform(0.5, max(0.6, 0.03 * min(h, w) + 0.5))
        holes |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0

    d[holes] = 0.0
    return d


# --------------------------------------------------------------------------- pipeline


@dataclass(frozen=True)
class SensorModel:
    """The ranges a realistic low-resolution sensor is drawn from (``protocol="mix"``).

    Attributes:
        p_point, p_area: probabilities of point and area sampling; bicubic takes the rest.
        blur: largest Gaussian sigma (LR pixels) of the optical blur applied to HR depth
            before sampling (ToF and low-resolution sensors integrate over a footprint).
        shift: largest misregistration (LR pixels, each axis) between depth and guide.
        p_quantize: probability of disparity quantisation (step: a Kinect v1's times 0.5-2).
        dark: largest dropout probability of LR pixels on dark surfaces (absorbing
            materials return no signal); their darkness threshold is drawn in [0.05, 0.25].
    """

    p_point: float = 0.4
    p_area: float = 0.4
    blur: float = 0.5
    shift: float = 0.5
    p_quantize: float = 0.3
    dark: float = 0.5

    def __post_init__(self) -> None:
        if not (self.p_point >= 0 and self.p_area >= 0 and self.p_point + self.p_area <= 1):
            raise InputError(
                f"SensorModel: p_point={self.p_point} and p_area={self.p_area} must be "
                "probabilities summing to at most 1"
            )
        for name in ("blur", "shift", "p_quantize", "dark"):
            if not getattr(self, name) >= 0:
                raise InputError(f"SensorModel: {name}={getattr(self, name)} must be >= 0")


def blur_depth(depth: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (``sigma`` in HR pixels) of valid depth only; missing pixels stay missing.

    Normalised convolution: each pixel is the Gaussian-weighted mean of the valid pixels
    around it, so holes do not pull depth towards 0 while depths across an edge mix, as a
    sensor's footprint mixes them.
    """
    d = _as_depth(depth)
    if sigma <= 0:
        return d
    valid = (d > 0).astype(np.float64)
    num = ndimage.gaussian_filter(d.astype(np.float64), sigma, mode="nearest")
    den = ndimage.gaussian_filter(valid, sigma, mode="nearest")
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 1e-6)
    out[valid == 0] = 0.0
    return out.astype(np.float32)


def shift_depth(depth: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Depth moved by (``dy``, ``dx``) whole HR pixels against the guide, borders repeated."""
    d = _as_depth(depth)
    h, w = d.shape
    ys = np.clip(np.arange(h) - dy, 0, h - 1)
    xs = np.clip(np.arange(w) - dx, 0, w - 1)
    return np.ascontiguousarray(d[ys][:, xs])


def drop_dark(
    lr: np.ndarray, rgb: np.ndarray, scale: int, threshold: float, probability: float, rng: np.random.Generator
) -> np.ndarray:
    """Make LR pixels whose guide block is darker than ``threshold`` missing with ``probability``."""
    s = check_scale(scale)
    arr = np.asarray(rgb, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] != lr.shape[0] * s or arr.shape[1] != lr.shape[1] * s:
        raise InputError(f"drop_dark: rgb {arr.shape} is not the (H, W, 3) guide of an LR map {lr.shape} at x{s}")
    luma = arr @ np.array([0.299, 0.587, 0.114], np.float32)
    dark = luma.reshape(lr.shape[0], s, lr.shape[1], s).mean(axis=(1, 3)) < threshold
    out = np.array(lr, dtype=np.float32, copy=True)
    out[dark & (rng.random(lr.shape) < probability)] = 0.0
    return out


def simulate_sensor(
    depth: np.ndarray,
    scale: int,
    rng: np.random.Generator,
    rgb: np.ndarray | None = None,
    noise: float = 0.0,
    holes: float = 0.0,
    sensor: SensorModel | None = None,
) -> tuple[np.ndarray, str]:
    """A realistic LR depth map from HR depth: one sensor drawn from ``sensor``'s ranges.

    In order: misregistration, optical blur, sampling (point / area / bicubic), noise with
    std ``U(0, noise) * z**2`` and, sometimes, disparity quantisation, then holes (blobs of
    ``U(0, holes)``, shadows, glints) and dark-surface dropouts (when ``rgb`` is given).

    Returns:
        (float32 ``(H / s, W / s)`` metres with 0 = missing, the sampling protocol drawn).
    """
    s = check_scale(scale)
    sensor = sensor or SensorModel()
    d = _as_depth(depth)
    _check_divisible(d.shape, s)
    u = rng.random()
    protocol = "point" if u < sensor.p_point else "area" if u < sensor.p_point + sensor.p_area else "bicubic"
    dy, dx = np.rint(rng.uniform(-sensor.shift, sensor.shift, size=2) * s).astype(int)
    d = shift_depth(d, int(dy), int(dx))
    d = blur_depth(d, rng.uniform(0.0, sensor.blur) * s)
    lr = {"point": downsample_point, "area": downsample_area, "bicubic": downsample_bicubic}[protocol](d, s)
    quant = KINECT_V1_INV_DEPTH_STEP * rng.uniform(0.5, 2.0) if rng.random() < sensor.p_quantize else 0.0
    sigma = rng.uniform(0.0, noise) if noise > 0 else 0.0
    if sigma > 0 or quant > 0:
        lr = add_depth_noise(lr, rng, sigma=sigma, quant_step=quant)
    if holes > 0:
        lr = add_holes(lr, rng, amount=rng.uniform(0.0, holes), shadow_width=1, specular=max(1, round(lr.size / 4000)))
    if rgb is not None and sensor.dark > 0:
        lr = drop_dark(lr, rgb, s, rng.uniform(0.05, 0.25), rng.uniform(0.0, sensor.dark), rng)
    return lr, protocol


def simulate_lr(
    depth: np.ndarray,
    scale: int,
    protocol: Protocol = "point",
    noise: float = 0.0,
    holes: float = 0.0,
    rng: np.random.Generator | int | None = None,
    quant_step: float = 0.0,
    rgb: np.ndarray | None = None,
    sensor: SensorModel | None = None,
) -> np.ndarray:
    """HR depth -> simulated LR sensor depth: downsample, then noise, then holes.

    Noise and holes are applied at the LR resolution, where the simulated sensor lives.
    ``protocol="mix"`` draws a realistic sensor per call instead (:func:`simulate_sensor`,
    with ``noise`` and ``holes`` as the largest values drawn).

    Args:
        depth: ``(H, W)`` metres, H and W divisible by ``scale``.
        scale: positive integer factor.
        protocol: ``"point"`` (:func:`downsample_point`), ``"area"``
            (:func:`downsample_area`) or ``"bicubic"`` (:func:`downsample_bicubic`).
        noise: ``sigma`` of :func:`add_depth_noise` (std at 1 m, metres); 0 = none.
        holes: ``amount`` of :func:`add_holes` (fraction of LR pixels in blobs); 0 = no
            holes of any kind, > 0 also adds edge shadows (1 px) and specular dropouts.
        rng: Generator or int seed used when noise or holes > 0 (None = unseeded).
        quant_step: inverse-depth quantisation, see :func:`add_depth_noise`.
        rgb: ``(H, W, 3)`` guide in [0, 1], for the dark-surface dropouts of ``"mix"``.
        sensor: the ranges ``"mix"`` draws from (default :class:`SensorModel`).

    Returns:
        float32 ``(H / s, W / s)`` metres, 0 = missing.
    """
    if protocol == "mix":
        return simulate_sensor(depth, scale, _rng(rng), rgb=rgb, noise=noise, holes=holes, sensor=sensor)[0]
    if protocol == "point":
        lr = downsample_point(depth, scale)
    elif protocol == "area":
        lr = downsample_area(depth, scale)
    elif protocol == "bicubic":
        lr = downsample_bicubic(depth, scale)
    else:
        raise InputError(f"protocol={protocol!r} is unknown; use one of {', '.join(PROTOCOLS)}")
    if noise < 0 or holes < 0:
        raise InputError(f"simulate_lr: noise={noise} and holes={holes} must be >= 0")
    if noise > 0 or holes > 0 or quant_step > 0:
        gen = _rng(rng)
        if noise > 0 or quant_step > 0:
            lr = add_depth_noise(lr, gen, sigma=noise, quant_step=quant_step)
        if holes > 0:
            specular = max(1, round(lr.size / 4000))
            lr = add_holes(lr, gen, amount=holes, shadow_width=1, specular=specular)
    return lr
